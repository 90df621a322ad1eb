"""The vectorised features equal a slow per-window reference built from scipy, on real CWRU windows."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import scipy.stats

from core.errors import DataError
from inputs.vibration.bearing import BearingGeometry, defect_frequencies, defect_orders
from inputs.vibration.features import (
    ORDERS,
    FeatureConfig,
    band_edges,
    extract_features,
    feature_names,
    frame,
    per_channel_names,
)
from tests.fixtures.vibration import FS, cwru

CFG = FeatureConfig()


def reference_features(x: np.ndarray, fs: float, rpm: float, cfg: FeatureConfig) -> list[float]:
    """One window, one channel, the slow way: scipy statistics, periodogram and Hilbert transform."""
    length = len(x)
    centred = x - x.mean()
    rms = np.sqrt(np.mean(centred**2))
    peak = np.abs(centred).max()
    row = [np.log10(rms), np.log10(peak), np.log10(np.ptp(x)), peak / rms,
           scipy.stats.kurtosis(x, fisher=False), scipy.stats.skew(x)]  # fmt: skip
    freqs, density = scipy.signal.periodogram(centred, fs, window=np.hanning(length), detrend=False)
    power = density * fs / length  # per-bin power
    edges = band_edges(cfg, fs)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (freqs > lo) & (freqs <= hi)
        row.append(np.log10(power[inside].sum() + 1e-12))
    inside = (freqs > 0) & (freqs <= edges[-1])
    row.append((power[inside] * freqs[inside]).sum() / power[inside].sum())
    row.append(freqs[1:][np.argmax(power[1:])])
    # envelope: brick-wall band-pass, then scipy's Hilbert transform
    spectrum = np.fft.rfft(x)
    bins = np.fft.rfftfreq(length, 1 / fs)
    band = (bins >= cfg.envelope_band_hz[0]) & (bins <= cfg.envelope_band_hz[1])
    envelope = np.abs(scipy.signal.hilbert(np.fft.irfft(spectrum * band, length)))
    amplitude = (
        np.abs(np.fft.rfft((envelope - envelope.mean()) * np.hanning(length))) * 2 / np.hanning(length).sum()
    )
    targets = defect_frequencies(cfg.bearing, rpm)
    floor_bins = (bins >= 0.5 * min(targets.values())) & (bins <= 3 * max(targets.values()))
    floor = np.median(amplitude[floor_bins]) + 1e-12
    for name in ORDERS:
        near = np.abs(bins - targets[name]) <= max(
            cfg.order_tolerance * targets[name], (bins[1] - bins[0]) / 2
        )
        row.append(np.log10(amplitude[near].max() / floor + 1e-12))
    return row


@pytest.mark.parametrize("label", ["normal", "IR_007_0hp", "OR_021_at6_0hp", "B_014_0hp"])
def test_vectorised_features_equal_the_per_window_reference(label):
    record = cwru(label)
    samples = record["signal"][:12000, None].astype(np.float64)  # (N, 1)
    windows = frame(samples, 2048, 997)  # an odd hop: windows start anywhere
    got = extract_features(windows.data, FS, float(record["rpm"]), CFG)
    expected = np.array([reference_features(w[0], FS, float(record["rpm"]), CFG) for w in windows.data])
    assert got.shape == expected.shape == (len(windows.starts), len(per_channel_names(CFG, FS)))
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)


def test_two_channels_are_featurised_channel_major():
    record = cwru("IR_007_0hp")
    x = record["signal"][:8192].astype(np.float64)
    both = np.stack([x, 0.5 * x[::-1]], 1)  # (N, 2): a second, different channel
    got = extract_features(frame(both, 2048, 2048).data, FS, 1797.0, CFG)
    single = [extract_features(frame(both[:, [c]], 2048, 2048).data, FS, 1797.0, CFG) for c in (0, 1)]
    np.testing.assert_allclose(got, np.concatenate(single, 1))
    names = feature_names(CFG, FS, ("DE", "FE"))
    assert len(names) == got.shape[1] and names[0] == "DE.log_rms" and names[-1] == "FE.env_bsf"


def test_frame_is_a_view_and_stays_inside_the_range():
    samples = np.arange(10000, dtype=np.float64)[:, None]
    windows = frame(samples, 1000, 300, start=2000, stop=6000)
    assert np.shares_memory(windows.data, samples)
    assert windows.starts[0] == 2000 and windows.starts[-1] + 1000 <= 6000
    np.testing.assert_array_equal(windows.data[:, 0, 0], windows.starts)


def test_bearing_orders_match_the_published_cwru_values():
    orders = defect_orders(BearingGeometry())
    assert orders["BPFI"] == pytest.approx(5.4152, abs=1e-3)
    assert orders["BPFO"] == pytest.approx(3.5848, abs=1e-3)
    assert orders["BSF"] == pytest.approx(4.7135, abs=1e-3)
    # the README's expected inner-race frequency for 105.mat at 1797 rpm
    assert defect_frequencies(BearingGeometry(), 1797)["BPFI"] == pytest.approx(162.19, abs=0.05)


def test_inner_race_record_has_the_strongest_envelope_peak_at_bpfi():
    record = cwru("IR_007_0hp")
    windows = frame(record["signal"][:, None].astype(np.float64), 2048, 4096)
    names = per_channel_names(CFG, FS)
    got = extract_features(windows.data, FS, float(record["rpm"]), CFG)
    bpfi, bpfo, bsf = (got[:, names.index(n)] for n in ("env_bpfi", "env_bpfo", "env_bsf"))
    assert np.all(bpfi > bpfo) and np.all(bpfi > bsf)


def test_missing_shaft_speed_is_a_clear_error():
    samples = cwru("normal")["signal"][:4096, None].astype(np.float64)
    with pytest.raises(DataError, match="rpm"):
        extract_features(frame(samples, 2048, 2048).data, FS, None, CFG)
