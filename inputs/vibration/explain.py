"""Why a window alarmed, in words a maintenance engineer acts on.

Two parts: the features furthest from normal, in units of their normal spread, and the envelope-
spectrum peak matched to a bearing defect order ("inner-race signature at 162 Hz (5.42 x shaft)")
or "no bearing order matched" when no order's peak stands `min_peak_ratio` times above the
envelope spectrum's floor. The envelope spectra of all explained windows are computed at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from inputs.vibration.bearing import DEFECT_NAMES, defect_frequencies
from inputs.vibration.features import ORDERS, FeatureConfig, background_bins, envelope_spectrum, order_windows

# What each feature measures, in a maintenance engineer's words; log10 features read as ratios.
WORDS = {
    "log_rms": "vibration level (RMS)", "log_peak": "peak level", "log_peak_to_peak": "peak-to-peak level",
    "crest_factor": "crest factor (peak / RMS)", "kurtosis": "impulsiveness (kurtosis)",
    "skewness": "asymmetry (skewness)", "spectral_centroid_hz": "spectral centre",
    "dominant_frequency_hz": "strongest frequency", "env_bpfi": "inner-race (BPFI) impact rhythm",
    "env_bpfo": "outer-race (BPFO) impact rhythm", "env_bsf": "ball (BSF) impact rhythm",
}  # fmt: skip


def _ratio(decades: float) -> str:
    ratio = 10.0 ** abs(decades)
    size = f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"
    return f"{size} {'above' if decades >= 0 else 'below'} normal"


def _hz(value: float) -> str:
    return f"{value / 1000:.1f} kHz" if value >= 1000 else f"{value:.0f} Hz"


def in_words(feature: str, value: float, normal: float) -> str:
    """One deviation as words: "B1x: energy 4.0-4.5 kHz 37x above normal" (not "band_4050_4500hz -37.1 sd")."""
    channel, _, name = feature.rpartition(".")
    where = f"{channel}: " if channel else ""
    if name.startswith("band_"):
        low, high = (float(v) for v in name.removeprefix("band_").removesuffix("hz").split("_"))
        return f"{where}energy {low / 1000:.1f}-{high / 1000:.1f} kHz {_ratio(value - normal)}"
    words = WORDS.get(name, name)
    if name.startswith("log_"):
        return f"{where}{words} {_ratio(value - normal)}"
    if name.startswith("env_"):
        return f"{where}{words} {10**value:.1f}x the envelope floor (normal {10**normal:.1f}x)"
    if name.endswith("_hz"):
        return f"{where}{words} {_hz(value)} (normal {_hz(normal)})"
    return f"{where}{words} {value:.3g} (normal {normal:.3g})"


@dataclass(frozen=True)
class Deviation:
    feature: str
    z: float  # (value - normal mean) / normal spread
    value: float
    normal_mean: float

    def text(self) -> str:
        return in_words(self.feature, self.value, self.normal_mean)


@dataclass(frozen=True)
class OrderMatch:
    order: str | None  # BPFI | BPFO | BSF, or None when nothing stands out
    channel: str
    peak_hz: float
    shaft_order: float  # peak_hz / shaft speed
    expected_hz: float
    peak_ratio: float  # peak over the envelope spectrum's median floor

    def text(self) -> str:
        if self.order is None:
            return (
                f"no bearing order matched (strongest: {self.peak_ratio:.1f}x floor at {self.peak_hz:.0f} Hz)"
            )
        return (
            f"{DEFECT_NAMES[self.order]} signature at {self.peak_hz:.0f} Hz ({self.shaft_order:.2f} x shaft; "
            f"{self.order} expected {self.expected_hz:.0f} Hz), {self.peak_ratio:.1f}x the envelope floor"
        )


@dataclass(frozen=True)
class Explanation:
    deviations: list[Deviation]
    match: OrderMatch

    def text(self) -> str:
        return f"{self.match.text()}; most unusual: {'; '.join(d.text() for d in self.deviations)}"

    def to_dict(self) -> dict:
        return asdict(self)


def top_deviations(
    features: np.ndarray, mean: np.ndarray, spread: np.ndarray, names: list[str], k: int
) -> list[list[Deviation]]:
    """Per window (A, F), the k features with the largest |z| against the normal profile."""
    z = (features - mean) / spread  # (A, F)
    order = np.argsort(-np.abs(z), axis=1)[:, :k]  # (A, k)
    return [
        [Deviation(names[j], float(z[i, j]), float(features[i, j]), float(mean[j])) for j in row]
        for i, row in enumerate(order)
    ]


def match_orders(windows: np.ndarray, fs: float, rpm: float, channels: tuple[str, ...],
                 features: FeatureConfig, min_ratio: float) -> list[OrderMatch]:  # fmt: skip
    """Per window (A, C, L), the defect order whose envelope peak stands highest above the floor."""
    freqs, amplitude = envelope_spectrum(
        np.asarray(windows, np.float64), fs, features.envelope_band_hz
    )  # (A, C, K)
    targets = defect_frequencies(features.bearing, rpm)
    floor = np.median(amplitude[..., background_bins(freqs, targets)], -1) + 1e-12  # (A, C)
    masks = order_windows(freqs, targets, features.order_tolerance)
    ratios, peaks = [], []
    for name in ORDERS:  # 3 orders, vectorised over windows and channels
        inside = np.flatnonzero(masks[name])
        best = inside[np.argmax(amplitude[..., inside], -1)]  # (A, C) bin of the peak
        peaks.append(freqs[best])
        ratios.append(np.take_along_axis(amplitude, best[..., None], -1)[..., 0] / floor)
    ratio, peak = np.stack(ratios, -1), np.stack(peaks, -1)  # (A, C, 3)
    shaft_hz = rpm / 60.0
    out = []
    for i in range(len(ratio)):  # building the result objects, not computing
        c, o = np.unravel_index(np.argmax(ratio[i]), ratio[i].shape)
        matched = ratio[i, c, o] >= min_ratio
        out.append(
            OrderMatch(ORDERS[o] if matched else None, channels[c], float(peak[i, c, o]), float(peak[i, c, o] / shaft_hz),
                       float(targets[ORDERS[o]]), float(ratio[i, c, o]))
        )  # fmt: skip
    return out


def explain_windows(windows: np.ndarray, features: np.ndarray, mean: np.ndarray, spread: np.ndarray,
                    names: list[str], fs: float, rpm: float, channels: tuple[str, ...],
                    feature_cfg: FeatureConfig, top: int, min_ratio: float) -> list[Explanation]:  # fmt: skip
    """Explanations for the given windows (A, C, L) and their features (A, F)."""
    if len(windows) == 0:
        return []
    deviations = top_deviations(features, mean, spread, names, top)
    matches = match_orders(windows, fs, rpm, channels, feature_cfg, min_ratio)
    return [Explanation(d, m) for d, m in zip(deviations, matches, strict=True)]


def best_peak_ratios(windows: np.ndarray, fs: float, rpm: float, channels: tuple[str, ...],
                     features: FeatureConfig) -> np.ndarray:  # fmt: skip
    """Per window (W, C, L), the highest envelope peak ratio over all orders and channels (W,)."""
    return np.array([m.peak_ratio for m in match_orders(windows, fs, rpm, channels, features, np.inf)])
