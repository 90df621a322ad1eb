"""Per-sample measurements behind the sensor checks, vectorised with numpy (no pandas: devices use them).

`sample_masks` says, per rule, which samples break it; `block_measurements` and
`channel_measurements` turn the masks and the record into the columns of the small tables the GX
suites validate (data_checks.vibration.checks) and `screen_record` checks directly.
"""

from __future__ import annotations

import numpy as np

from data_checks.vibration.config import SensorRules
from inputs.vibration.signals import SensorRecord


def _run_mask(equal_next: np.ndarray, min_run: int) -> np.ndarray:
    """Samples inside runs of >= `min_run` equal consecutive values; `equal_next` (N-1,) is x[i+1] == x[i]."""
    n = len(equal_next) + 1
    edges = np.flatnonzero(np.diff(np.concatenate([[0], equal_next.astype(np.int8), [0]])))
    mask = np.zeros(n + 1, np.int32)
    for start, stop in zip(edges[::2], edges[1::2], strict=True):  # runs, not samples: few iterations
        if stop - start + 1 >= min_run:
            mask[start] += 1
            mask[stop + 1] -= 1
    return np.cumsum(mask)[:n] > 0


def _clipped(x: np.ndarray, record: SensorRecord, rules: SensorRules) -> np.ndarray:
    """(N,) samples at the sensor's limit: beyond clip_fraction of a declared range; otherwise the
    record's own extreme value when it repeats (an unclipped record reaches it 1 to 4 times, CWRU)."""
    if record.sensor_range is not None:
        return np.abs(x) >= rules.clip_fraction * record.sensor_range
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros(len(x), bool)
    mask = np.zeros(len(x), bool)
    for extreme in (x[finite].max(), x[finite].min()):
        at = x == extreme
        in_runs = _run_mask(at[1:] & at[:-1], rules.min_clip_run)
        mask |= at if at.sum() >= rules.min_clip_count else in_runs
    return mask


def _timestamp_masks(record: SensorRecord, rules: SensorRules) -> dict[str, np.ndarray]:
    n = record.n_samples
    empty = {k: np.zeros(n, bool) for k in ("timestamp_gap", "duplicate_timestamps", "timestamps_monotonic")}
    if record.timestamps is None or n < 2:
        return empty
    step = np.diff(record.timestamps)  # (N-1,): the step into sample i+1
    nominal = 1.0 / record.fs
    pad = np.concatenate([[False], step > rules.gap_factor * nominal])
    return {
        "timestamp_gap": pad,  # the first sample after a gap
        "duplicate_timestamps": np.concatenate([[False], step == 0]),
        "timestamps_monotonic": np.concatenate([[False], step < 0]),
    }


def sample_masks(record: SensorRecord, rules: SensorRules) -> dict[str, np.ndarray]:
    """Rule -> (N,) bool: which samples break it (any channel)."""
    x = record.samples  # (N, C)
    flat_run = max(2, int(round(rules.flat_run_s * record.fs)))
    equal_next = (x[1:] == x[:-1]) & np.isfinite(x[1:])  # (N-1, C)
    masks = {
        "nan_burst": ~np.isfinite(x).any(1) | ~np.isfinite(x).all(1),
        "clipping": np.any([_clipped(x[:, c], record, rules) for c in range(x.shape[1])], 0),
        "flat_line": np.any([_run_mask(equal_next[:, c], flat_run) for c in range(x.shape[1])], 0),
    }
    masks["flat_line"] &= ~masks["clipping"]  # a flat top is clipping, not a dead sensor
    return masks | _timestamp_masks(record, rules)


def _block_rms(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    finite = np.where(np.isfinite(x), x, 0.0)
    centred = finite - np.nanmean(np.where(np.isfinite(x), x, np.nan), 0)
    sums = np.add.reduceat(centred**2, starts, axis=0)  # (B, C)
    counts = np.diff(np.concatenate([starts, [len(x)]]))[:, None]
    return np.sqrt(sums / counts).max(1)  # (B,) the loudest channel


def block_measurements(
    record: SensorRecord, masks: dict[str, np.ndarray], rules: SensorRules
) -> dict[str, np.ndarray]:
    """One row per block: counts of samples breaking each rule, RMS and the jump from the previous block."""
    size = max(1, int(round(rules.block_s * record.fs)))
    starts = np.arange(0, record.n_samples, size)
    table = {
        "block": np.arange(len(starts)),
        "start": starts,
        "stop": np.minimum(starts + size, record.n_samples),
    }
    columns = {"n_nonfinite": "nan_burst", "n_clipped": "clipping", "n_flat": "flat_line", "n_gap": "timestamp_gap",
               "n_duplicate": "duplicate_timestamps", "n_backwards": "timestamps_monotonic"}  # fmt: skip
    for column, rule in columns.items():
        table[column] = np.add.reduceat(masks[rule].astype(np.int64), starts)
    rms = _block_rms(record.samples, starts)
    ratio = np.maximum(rms[1:], 1e-12) / np.maximum(rms[:-1], 1e-12)
    table["rms"] = rms
    table["rms_jump"] = np.concatenate([[1.0], np.maximum(ratio, 1 / ratio)])
    return table


def _rate(record: SensorRecord, expected_fs: float | None) -> tuple[float, str]:
    """Relative rate error and a sentence saying what was compared with what."""
    problems = []
    if record.timestamps is not None and record.n_samples > 1:
        steps = np.diff(record.timestamps)
        steps = steps[steps > 0]
        measured = 1.0 / np.median(steps) if len(steps) else float("inf")
        problems.append(
            (
                abs(measured - record.fs) / record.fs,
                f"timestamps are spaced at {measured:g} Hz, the file declares {record.fs:g} Hz",
            )
        )
    if expected_fs is not None:
        problems.append(
            (
                abs(record.fs - expected_fs) / expected_fs,
                f"the record is at {record.fs:g} Hz, the model expects {expected_fs:g} Hz",
            )
        )
    return max(problems, default=(0.0, ""))  # fmt: skip


def channel_measurements(record: SensorRecord, expected_fs: float | None) -> dict[str, list]:
    """Per channel: declared units and name, rate error, spread, power share below fs/8."""
    x = np.where(np.isfinite(record.samples), record.samples, 0.0)  # (N, C)
    power = np.abs(np.fft.rfft(x - x.mean(0), axis=0)) ** 2  # (K, C)
    freqs = np.fft.rfftfreq(len(x), 1.0 / record.fs)
    low_share = power[freqs < record.fs / 8].sum(0) / np.maximum(power.sum(0), 1e-30)
    rate_error, rate_detail = _rate(record, expected_fs)
    n = len(record.channels)
    return {
        "channel": list(record.channels),
        "units": [record.units or "undeclared"] * n,
        "channel_declared": [record.channels_declared] * n,
        "rate_error": [float(rate_error)] * n,
        "rate_detail": [rate_detail] * n,
        "std": [float(v) for v in x.std(0)],
        "low_band_power": [float(v) for v in low_share],
    }


def alignment_lag(
    a: np.ndarray, b: np.ndarray, fs: float, max_lag_s: float, max_samples: int = 1 << 16
) -> int | None:
    """Samples by which `b` lags `a` (peak of their FFT cross-correlation within +-max_lag_s); None if unmeasurable."""
    n = min(len(a), len(b), max_samples)
    a, b = np.nan_to_num(a[:n] - np.nanmean(a[:n])), np.nan_to_num(b[:n] - np.nanmean(b[:n]))
    if n < 16 or a.std() == 0 or b.std() == 0:
        return None
    size = 1 << int(np.ceil(np.log2(2 * n)))
    corr = np.fft.irfft(
        np.conj(np.fft.rfft(a, size)) * np.fft.rfft(b, size), size
    )  # corr[k] = sum a[t] b[t+k]
    max_lag = min(n - 1, int(max_lag_s * fs))
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = np.concatenate([corr[: max_lag + 1], corr[size - max_lag :]])
    return int(lags[np.argmax(values)])
