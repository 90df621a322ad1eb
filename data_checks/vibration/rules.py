"""The raw-sensor rules, and `screen_record`: the same rules checked with numpy alone.

The rules are declared once here. The data gate before training (data_checks.vibration.checks)
validates them with great-expectations suites, which also build Data Docs; scoring, on the
platform and on a device, needs no GX and no pandas, so it screens each file with
`screen_record`, which evaluates the same declarations directly. Sample-level `error` rules
(NaN burst, clipping, flat line, timestamp faults) flag the windows that touch them; record-level
`error` rules (wrong sample rate, undeclared units or channels, channel count, dead channel,
power crowded below fs/8) make the record unusable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from data_checks.findings import Finding, Severity, stop_message  # noqa: F401  (re-exported for scoring)
from data_checks.vibration.config import SensorRules
from data_checks.vibration.measure import alignment_lag, channel_measurements, sample_masks
from inputs.vibration.signals import SensorRecord

DEFAULT_SEVERITY = {
    "nan_burst": Severity.ERROR,
    "clipping": Severity.ERROR,
    "flat_line": Severity.ERROR,
    "timestamp_gap": Severity.ERROR,
    "duplicate_timestamps": Severity.ERROR,
    "timestamps_monotonic": Severity.ERROR,
    "rms_jump": Severity.WARN,
    "wrong_rate": Severity.ERROR,
    "units_declared": Severity.ERROR,
    "channels_declared": Severity.ERROR,
    "channel_count": Severity.ERROR,
    "flat_channel": Severity.ERROR,
    "spectral_occupancy": Severity.ERROR,  # 0.94 for CWRU's 48 kHz record read as 12 kHz, <= 0.30 at 12 kHz
    "time_alignment": Severity.WARN,
    "bad_fraction": Severity.ERROR,
}
SAMPLE_RULES = {  # block-table column -> (rule, what the rule expects)
    "n_nonfinite": ("nan_burst", "samples must be finite (no NaN/Inf)"),
    "n_clipped": ("clipping", "samples must stay inside the sensor range (no flat tops at the extremes)"),
    "n_flat": ("flat_line", "the signal must not stay exactly constant"),
    "n_gap": ("timestamp_gap", "timestamps must be evenly spaced at the declared rate (no gaps)"),
    "n_duplicate": ("duplicate_timestamps", "timestamps must not repeat"),
    "n_backwards": ("timestamps_monotonic", "timestamps must increase"),
}


@dataclass(frozen=True)
class ChannelRule:
    """One per-channel expectation: `column` of the channel measurements must be <= `high`, >= `low`,
    or in `allowed` (each a function of the settings and the expected channel count)."""

    rule: str
    column: str
    text: Callable[[SensorRules, int | None], str]
    high: Callable[[SensorRules], float] | None = None
    low: float | None = None
    allowed: Callable[[SensorRules, int | None], list] | None = None


CHANNEL_RULES = (
    ChannelRule("wrong_rate", "rate_error", lambda r, _: f"sample rate must match the declared/expected one within {r.rate_tolerance:.0%}",
                high=lambda r: r.rate_tolerance),
    ChannelRule("units_declared", "units", lambda r, _: f"units must be declared as one of {list(r.allowed_units)}",
                allowed=lambda r, _: list(r.allowed_units)),
    ChannelRule("channels_declared", "channel_declared", lambda r, _: "channel names must be declared",
                allowed=lambda r, _: [True]),
    ChannelRule("flat_channel", "std", lambda r, _: "a channel must not be dead (zero spread)", low=1e-12),
    ChannelRule("spectral_occupancy", "low_band_power",
                lambda r, _: f"at most {r.max_low_band_power:.0%} of the power may lie below fs/8 (else the true rate is likely lower than declared)",
                high=lambda r: r.max_low_band_power),
    ChannelRule("channel_count", "n_channels", lambda r, n: f"the record must have {n} channel(s)",
                allowed=lambda r, n: [n]),
)  # fmt: skip


def channel_rules(expected_channels: int | None) -> tuple[ChannelRule, ...]:
    """The per-channel rules that apply: the channel count only when a model expects one."""
    return tuple(c for c in CHANNEL_RULES if c.rule != "channel_count" or expected_channels is not None)


def severity(rules: SensorRules, rule: str) -> Severity:
    return Severity(rules.severity.get(rule, DEFAULT_SEVERITY[rule]))


def channel_detail(rule: str, column: str, value: object, record: SensorRecord, rate_detail: str) -> str:
    """What was found, in the words every channel finding uses (GX path and numpy path alike)."""
    if rule == "wrong_rate":
        return rate_detail
    if rule == "channel_count":
        return f"found {len(record.channels)} ({', '.join(record.channels)})"
    return f"found {column}={value:.3g}" if isinstance(value, float) else f"found {column}={value!r}"


@dataclass
class CheckedRecord:
    """A record with its findings and, per sample-level error rule, which samples break it."""

    record: SensorRecord
    findings: list[Finding]
    bad_samples: dict[str, np.ndarray] = field(default_factory=dict)  # rule -> (N,) bool

    @property
    def usable(self) -> bool:
        """False when a record-level error rule broke: nothing in it can be scored."""
        return not self.record_errors()

    def record_errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.ERROR and f.rule not in self.bad_samples]

    def window_flags(self, starts: np.ndarray, length: int) -> list[str]:
        """Per window, the error rules its samples break ("" when clean): counted with cumulative sums."""
        flags = [[] for _ in starts]
        for rule, mask in self.bad_samples.items():
            counts = np.concatenate([[0], np.cumsum(mask)])  # (N + 1,)
            hit = counts[np.minimum(starts + length, len(mask))] - counts[starts] > 0  # (W,)
            for i in np.flatnonzero(hit):
                flags[i].append(rule)
        return [", ".join(f) for f in flags]


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def merged_runs(flags: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """Runs of True, neighbours closer than `gap` samples merged: one finding per damaged stretch."""
    merged: list[list[int]] = []
    for lo, hi in runs(flags):
        if merged and lo - merged[-1][1] < gap:
            merged[-1][1] = hi
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def alignment_finding(path: str, a: np.ndarray, b: np.ndarray, names: tuple[str, str], fs: float,
                       rules: SensorRules) -> Finding | None:  # fmt: skip
    lag = alignment_lag(a, b, fs, 1.0)
    if lag is None or abs(lag) <= rules.max_alignment_lag_s * fs:
        return None
    return Finding(
        "time_alignment", severity(rules, "time_alignment"),
        f"{names[1]!r} lags {names[0]!r} by {lag} samples ({1000 * lag / fs:.2f} ms; cross-correlation peak), "
        f"tolerance {1000 * rules.max_alignment_lag_s:.2f} ms", path,
    )  # fmt: skip


def alignment_findings(record: SensorRecord, rules: SensorRules) -> list[Finding]:
    """Each channel against the first: the cross-correlation lag, reported when above the tolerance."""
    found = [
        alignment_finding(str(record.path), record.samples[:, 0], record.samples[:, c],
                           (f"channel {record.channels[0]}", f"channel {record.channels[c]}"), record.fs, rules)
        for c in range(1, len(record.channels))
    ]  # fmt: skip
    return [f for f in found if f is not None]


def error_masks(masks: dict[str, np.ndarray], rules: SensorRules) -> dict[str, np.ndarray]:
    """The sample-level rules that are errors and break somewhere: what flags windows."""
    return {rule: m for rule, m in masks.items() if severity(rules, rule) == Severity.ERROR and m.any()}


def _broken(rule: ChannelRule, value: object, rules: SensorRules, expected_channels: int | None) -> bool:
    if rule.allowed is not None:
        return value not in rule.allowed(rules, expected_channels)
    if rule.high is not None and not value <= rule.high(rules):
        return True
    return rule.low is not None and not value >= rule.low


def screen_record(record: SensorRecord, rules: SensorRules, expected_fs: float | None = None,
                  expected_channels: int | None = None) -> CheckedRecord:  # fmt: skip
    """Every rule on one record with numpy alone (no GX, no pandas): what scoring runs."""
    masks = sample_masks(record, rules)
    channels = channel_measurements(record, expected_fs) | {
        "n_channels": [len(record.channels)] * len(record.channels)
    }
    findings = []
    for rule in channel_rules(expected_channels):
        for i, name in enumerate(record.channels):
            value = channels[rule.column][i]
            if _broken(rule, value, rules, expected_channels):
                detail = channel_detail(rule.rule, rule.column, value, record, channels["rate_detail"][i])
                message = f"channel {name!r}: {rule.text(rules, expected_channels)}; {detail}"
                findings.append(Finding(rule.rule, severity(rules, rule.rule), message, str(record.path)))
    texts = dict(SAMPLE_RULES.values())
    block = max(1, int(round(rules.block_s * record.fs)))
    for rule, mask in masks.items():
        for lo, hi in merged_runs(mask, block):
            message = f"{record.where(lo, hi)}: {texts[rule]}; {int(mask[lo:hi].sum())} sample(s) break it"
            findings.append(Finding(rule, severity(rules, rule), message, str(record.path)))
    findings += alignment_findings(record, rules)
    return CheckedRecord(record, findings, error_masks(masks, rules))


def too_damaged(checked: CheckedRecord, rules: SensorRules) -> Finding | None:
    """A record-level finding when more than `max_bad_fraction` of its samples break sample-level rules."""
    if not checked.bad_samples:
        return None
    share = float(np.any(list(checked.bad_samples.values()), 0).mean())
    if share <= rules.max_bad_fraction:
        return None
    return Finding(
        "bad_fraction", Severity.ERROR,
        f"{share:.0%} of the samples break {sorted(checked.bad_samples)} (limit {rules.max_bad_fraction:.0%}): "
        "is the sensor connected and is this the right file?", str(checked.record.path),
    )  # fmt: skip
