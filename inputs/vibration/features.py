"""Windowed vibration features, computed for all windows at once (no Python loop per window).

Per channel: time-domain shape (RMS, peak, peak-to-peak, crest factor, kurtosis, skewness),
spectral band energies, spectral centroid, dominant frequency, and the envelope-spectrum peak at
each bearing defect order (BPFI, BPFO, BSF). A model records FEATURE_SET (name + version) and the
FeatureConfig, so scoring code can refuse features computed differently from the ones it saw.
Bump FEATURE_SET_VERSION whenever a formula or the column order changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.card import VIBRATION_ANOMALY
from core.errors import ConfigError, DataError
from inputs.vibration.bearing import BearingGeometry, defect_frequencies

FEATURE_SET_NAME = "vibration-bearing"
FEATURE_SET_VERSION = 1
FEATURE_SET = f"{FEATURE_SET_NAME}@v{FEATURE_SET_VERSION}"
TIME_FEATURES = ("log_rms", "log_peak", "log_peak_to_peak", "crest_factor", "kurtosis", "skewness")
SPECTRAL_FEATURES = ("spectral_centroid_hz", "dominant_frequency_hz")
ORDER_FEATURES = ("env_bpfi", "env_bpfo", "env_bsf")  # log10(envelope peak / median) at each order
ORDERS = ("BPFI", "BPFO", "BSF")
EPS = 1e-12
CHUNK = 256  # windows per batch: bounds memory (256 x 2048 complex spectra = 8 MB), not a per-window loop


class FeatureConfig(BaseModel):
    """What `extract_features` measures; stored with the model next to the feature-set version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_bands: int = Field(12, ge=1, le=64)
    # Bands stop at 90 % of Nyquist: the top is shaped by each recorder's anti-alias filter (the CWRU
    # normal record was decimated 48 -> 12 kHz), which says nothing about the machine.
    band_max_fraction: float = Field(0.9, gt=0, le=1)
    envelope_band_hz: tuple[float, float] = (2000.0, 5000.0)  # resonance band demodulated for impacts
    order_tolerance: float = Field(0.03, gt=0, lt=0.2)  # +-3 % around a defect frequency (slip, speed error)
    bearing: BearingGeometry = BearingGeometry()

    @model_validator(mode="after")
    def _band_is_ordered(self) -> FeatureConfig:
        low, high = self.envelope_band_hz
        if not 0 < low < high:
            raise ValueError(
                f"envelope_band_hz must be (low, high) with 0 < low < high, got {self.envelope_band_hz}"
            )
        return self


@dataclass(frozen=True)
class Windows:
    """Windows of one record: `data` (W, C, L) is a strided view, `starts` (W,) their first samples."""

    data: np.ndarray
    starts: np.ndarray
    length: int


def frame(samples: np.ndarray, length: int, hop: int, start: int = 0, stop: int | None = None) -> Windows:
    """Windows lying fully inside samples[start:stop] (N, C), as a view: nothing is copied."""
    stop = len(samples) if stop is None else stop
    if stop - start < length:
        return Windows(np.empty((0, samples.shape[1], length), samples.dtype), np.empty(0, int), length)
    view = np.lib.stride_tricks.sliding_window_view(samples[start:stop], length, axis=0)  # (N', C, L)
    return Windows(view[::hop], start + np.arange(0, stop - start - length + 1, hop), length)


def band_names(cfg: FeatureConfig, fs: float) -> tuple[str, ...]:
    edges = band_edges(cfg, fs)
    return tuple(f"band_{lo:.0f}_{hi:.0f}hz" for lo, hi in zip(edges[:-1], edges[1:], strict=True))


def band_edges(cfg: FeatureConfig, fs: float) -> np.ndarray:
    return np.linspace(0.0, cfg.band_max_fraction * fs / 2, cfg.n_bands + 1)


def per_channel_names(cfg: FeatureConfig, fs: float) -> tuple[str, ...]:
    return TIME_FEATURES + band_names(cfg, fs) + SPECTRAL_FEATURES + ORDER_FEATURES


def feature_names(cfg: FeatureConfig, fs: float, channels: tuple[str, ...]) -> list[str]:
    """Column names of `extract_features`' output: "<channel>.<feature>", channel-major."""
    return [f"{channel}.{name}" for channel in channels for name in per_channel_names(cfg, fs)]


def _time_features(x: np.ndarray) -> np.ndarray:
    # x: (W, C, L) -> (W, C, 6); products instead of ** (pow is several times slower on arrays)
    centred = x - x.mean(-1, keepdims=True)
    c2 = centred * centred
    m2 = c2.mean(-1)
    rms = np.sqrt(m2)
    high, low = centred.max(-1), centred.min(-1)
    peak = np.maximum(high, -low)
    kurtosis = (c2 * c2).mean(-1) / np.maximum(m2 * m2, EPS)
    skewness = (c2 * centred).mean(-1) / np.maximum(m2 * rms, EPS)
    crest = peak / np.maximum(rms, EPS)
    return np.stack(
        [np.log10(rms + EPS), np.log10(peak + EPS), np.log10(high - low + EPS), crest, kurtosis, skewness], -1
    )


def _spectral_features(x: np.ndarray, fs: float, cfg: FeatureConfig) -> np.ndarray:
    # x: (W, C, L) -> (W, C, n_bands + 2); one-sided Hann power spectrum, Parseval-scaled
    length = x.shape[-1]
    hann = np.hanning(length)
    centred = x - x.mean(-1, keepdims=True)
    power = np.abs(np.fft.rfft(centred * hann, axis=-1)) ** 2 * (
        2.0 / (length * np.sum(hann**2))
    )  # (W, C, K)
    freqs = np.fft.rfftfreq(length, 1.0 / fs)
    edges = band_edges(cfg, fs)
    band_id = np.digitize(freqs, edges[1:-1], right=True)  # (K,) band of each bin: lo < f <= hi
    inside = (freqs > 0) & (freqs <= edges[-1])
    onehot = (band_id[:, None] == np.arange(cfg.n_bands)[None, :]) & inside[:, None]  # (K, B)
    bands = np.log10(power @ onehot + EPS)  # (W, C, B)
    total = np.maximum(power[..., inside].sum(-1), EPS)
    centroid = (power[..., inside] * freqs[inside]).sum(-1) / total
    dominant = freqs[1:][np.argmax(power[..., 1:], -1)]
    return np.concatenate([bands, centroid[..., None], dominant[..., None]], -1)


def envelope_spectrum(
    x: np.ndarray, fs: float, band_hz: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude spectrum of the Hilbert envelope of x band-passed to `band_hz`; returns (freqs, (..., K)).

    Band-pass and Hilbert transform in one step: keep only the positive-frequency bins of the band,
    doubled, and invert the full-length FFT: that is the analytic signal of the band-passed window.
    """
    length = x.shape[-1]
    freqs = np.fft.rfftfreq(length, 1.0 / fs)
    keep = (freqs >= band_hz[0]) & (freqs <= min(band_hz[1], fs / 2 * 0.999))
    if not keep.any():
        raise DataError(f"envelope band {band_hz} Hz lies above the Nyquist frequency {fs / 2:g} Hz")
    band = np.flatnonzero(keep)  # positive-frequency bins; rfft bin k is fft bin k
    analytic = np.zeros(x.shape, np.complex128)  # (..., L): negative frequencies stay zero
    analytic[..., band] = 2.0 * np.fft.rfft(x, axis=-1)[..., band]
    envelope = np.abs(np.fft.ifft(analytic, axis=-1))  # (..., L)
    envelope -= envelope.mean(-1, keepdims=True)
    hann = np.hanning(length)
    amplitude = np.abs(np.fft.rfft(envelope * hann, axis=-1)) * (2.0 / hann.sum())  # (..., K)
    return freqs, amplitude


def order_windows(freqs: np.ndarray, targets: dict[str, float], tolerance: float) -> dict[str, np.ndarray]:
    """Per order, the envelope bins within +-tolerance of its frequency (at least the nearest bin)."""
    resolution = freqs[1] - freqs[0]
    return {name: np.abs(freqs - hz) <= max(tolerance * hz, resolution / 2) for name, hz in targets.items()}


def background_bins(freqs: np.ndarray, targets: dict[str, float]) -> np.ndarray:
    """Where the envelope spectrum's noise floor is measured: half the lowest to 3x the highest order."""
    return (freqs >= 0.5 * min(targets.values())) & (freqs <= 3.0 * max(targets.values()))


def _order_features(x: np.ndarray, fs: float, rpm: float, cfg: FeatureConfig) -> np.ndarray:
    # x: (W, C, L) -> (W, C, 3): log10 of the envelope peak near each defect order over the median floor
    freqs, amplitude = envelope_spectrum(x, fs, cfg.envelope_band_hz)
    targets = defect_frequencies(cfg.bearing, rpm)
    floor = np.median(amplitude[..., background_bins(freqs, targets)], -1) + EPS  # (W, C)
    masks = order_windows(freqs, targets, cfg.order_tolerance)
    peaks = [amplitude[..., masks[name]].max(-1) for name in ORDERS]  # 3 orders, not windows
    return np.log10(np.stack(peaks, -1) / floor[..., None] + EPS)


def extract_features(windows: np.ndarray, fs: float, rpm: float | None, cfg: FeatureConfig) -> np.ndarray:
    """Features (W, C * F) of windows (W, C, L), in the column order of `feature_names`."""
    if rpm is None or not rpm > 0:
        raise DataError(
            f"shaft speed unknown (rpm={rpm}): the envelope features need it to place BPFI/BPFO/BSF; "
            "declare rpm in the file or pass --rpm"
        )
    n_windows, n_channels = windows.shape[:2]
    out = np.empty((n_windows, n_channels, len(per_channel_names(cfg, fs))))
    for lo in range(0, n_windows, CHUNK):  # memory-bounded batches of CHUNK windows each
        x = np.asarray(windows[lo : lo + CHUNK], dtype=np.float64)
        out[lo : lo + CHUNK] = np.concatenate(
            [_time_features(x), _spectral_features(x, fs, cfg), _order_features(x, fs, rpm, cfg)], -1
        )
    return out.reshape(n_windows, -1)


def spread_floor(names: list[str], fs: float, length: int) -> np.ndarray:
    """The smallest spread a feature is measured in (F,), so a near-constant feature on normal data
    does not turn a harmless change into 1000 standard deviations. Below these, a change is the
    measurement, not the machine: 0.02 decades (5 %) of an amplitude or band energy, one FFT bin of
    a frequency, 0.05 decades of an envelope peak ratio, 0.01 of a shape statistic."""
    floors = []
    for name in names:
        feature = name.split(".", 1)[-1]
        if feature.startswith(("log_", "band_")):
            floors.append(0.02)
        elif feature.endswith("_hz"):
            floors.append(fs / length)
        elif feature.startswith("env_"):
            floors.append(0.05)
        else:
            floors.append(0.01)
    return np.asarray(floors)


def normal_profile(
    features: np.ndarray, names: list[str], fs: float, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and floored standard deviation (F,) of normal training windows: the unit of 'how unusual'."""
    return features.mean(0), np.maximum(features.std(0), spread_floor(names, fs, length))


def features_from_card(card: dict) -> FeatureConfig:
    """The FeatureConfig a model was trained with; refuses feature sets this code does not compute."""
    if card.get("kind") != VIBRATION_ANOMALY:
        raise ConfigError(
            f"not a vibration anomaly model (card kind {card.get('kind')!r}, expected {VIBRATION_ANOMALY!r})"
        )
    recorded = card["input"]["preprocessing"]["feature_set"]
    if recorded["id"] != FEATURE_SET:
        raise ConfigError(
            f"the model was trained on features {recorded['id']}; this code computes {FEATURE_SET}. "
            "Retrain it (shopfloor train anomaly) or score with the shopfloor version that trained it"
        )
    return FeatureConfig.model_validate(recorded["config"])
