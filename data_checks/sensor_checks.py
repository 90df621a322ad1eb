"""Checks on raw sensor records: great-expectations suites over per-channel and per-block tables.

numpy measures (vectorised, per sample) where each rule breaks; GX validates two small tables
built from those measurements, one row per channel and one row per block of `block_s` seconds,
so every failure maps to a `Finding` naming the file, the rule and the sample range. Sample-level
`error` rules (NaN burst, clipping, flat line, timestamp gap, duplicate or backward timestamps)
flag the windows that touch them instead of dropping anything silently; record-level `error`
rules (wrong sample rate, power crowded below fs/8 as when a 48 kHz record is declared 12 kHz,
undeclared units or channels, channel count, dead channel) make the record unusable. An RMS jump
or a channel offset in time is only a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import great_expectations as gx
import numpy as np
import pandas as pd

from data_checks.config import SensorRules  # noqa: F401  (re-exported: the stage and its settings)
from data_checks.errors import DataError
from data_checks.findings import Finding, Severity
from data_checks.gx_context import quiet_context, run_suite
from data_checks.sensor_data import SensorRecord
from data_checks.sensor_measure import alignment_lag, block_table, channel_table, sample_masks

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


def severity(rules: SensorRules, rule: str) -> Severity:
    return Severity(rules.severity.get(rule, DEFAULT_SEVERITY[rule]))


def _meta(rule: str, rules: SensorRules, text: str) -> dict:
    return {"rule": rule, "severity": str(severity(rules, rule)), "text": text}


def block_suite(rules: SensorRules) -> gx.ExpectationSuite:
    """Per-block expectations: every sample-level rule is a count that must be zero."""
    e = gx.expectations
    expectations = [
        e.ExpectColumnValuesToBeBetween(column=column, max_value=0, meta=_meta(rule, rules, text))
        for column, (rule, text) in SAMPLE_RULES.items()
    ]
    expectations.append(
        e.ExpectColumnValuesToBeBetween(
            column="rms_jump",
            max_value=rules.max_rms_jump,
            meta=_meta(
                "rms_jump", rules, f"block RMS must stay within {rules.max_rms_jump:g}x the previous block's"
            ),
        )
    )
    return gx.ExpectationSuite(name="sensor_blocks", expectations=expectations)


def channel_suite(rules: SensorRules, expected_channels: int | None) -> gx.ExpectationSuite:
    """Per-channel expectations: declared rate matches, units and names declared, channel alive."""
    e = gx.expectations
    expectations = [
        e.ExpectColumnValuesToBeBetween(
            column="rate_error",
            max_value=rules.rate_tolerance,
            meta=_meta("wrong_rate", rules, f"sample rate must match the declared/expected one within {rules.rate_tolerance:.0%}"),
        ),
        e.ExpectColumnValuesToBeInSet(
            column="units",
            value_set=list(rules.allowed_units),
            meta=_meta("units_declared", rules, f"units must be declared as one of {list(rules.allowed_units)}"),
        ),
        e.ExpectColumnValuesToBeInSet(
            column="channel_declared", value_set=[True], meta=_meta("channels_declared", rules, "channel names must be declared")
        ),
        e.ExpectColumnValuesToBeBetween(
            column="std", min_value=1e-12, meta=_meta("flat_channel", rules, "a channel must not be dead (zero spread)")
        ),
        e.ExpectColumnValuesToBeBetween(
            column="low_band_power",
            max_value=rules.max_low_band_power,
            meta=_meta("spectral_occupancy", rules, f"at most {rules.max_low_band_power:.0%} of the power may lie below fs/8 (else the true rate is likely lower than declared)"),
        ),
    ]  # fmt: skip
    if expected_channels is not None:
        expectations.append(
            e.ExpectColumnValuesToBeInSet(
                column="n_channels",
                value_set=[expected_channels],
                meta=_meta("channel_count", rules, f"the record must have {expected_channels} channel(s)"),
            )
        )
    return gx.ExpectationSuite(name="sensor_channels", expectations=expectations)


@dataclass
class CheckedRecord:
    """A record with its findings and, per sample-level error rule, which samples break it."""

    record: SensorRecord
    findings: list[Finding]
    bad_samples: dict[str, np.ndarray] = field(default_factory=dict)  # rule -> (N,) bool

    @property
    def usable(self) -> bool:
        """False when a record-level error rule broke: nothing in it can be scored."""
        return not any(f.severity == Severity.ERROR and f.rule not in self.bad_samples for f in self.findings)

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


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _failing_keys(result) -> set[str]:
    return {row["key"] for row in result.result.get("unexpected_index_list") or []}


def _time_step(record: SensorRecord, lo: int, hi: int) -> str:
    step = float(np.max(np.diff(record.timestamps[max(lo - 1, 0) : hi])))
    return f"; time jumps by {1000 * step:.2f} ms (nominal step {1000 / record.fs:.4f} ms)"


def _block_findings(
    results: list, blocks: pd.DataFrame, records: list[SensorRecord], masks: list[dict]
) -> list[Finding]:
    """Failing blocks -> one finding per run of neighbouring blocks, with the exact sample range."""
    findings = []
    for result in (r for r in results if not r.success):
        meta, column = result.expectation_config.meta, result.expectation_config.kwargs["column"]
        failing = blocks["key"].isin(_failing_keys(result)).to_numpy()
        for i, record in enumerate(records):
            mine = blocks["record"].to_numpy() == i
            rows = blocks[mine]
            for first, last in _runs(failing[mine]):
                lo, hi = int(rows["start"].iloc[first]), int(rows["stop"].iloc[last - 1])
                if meta["rule"] in masks[i]:  # the exact samples, not the whole block
                    inside = np.flatnonzero(masks[i][meta["rule"]][lo:hi])
                    lo, hi = lo + int(inside[0]), lo + int(inside[-1]) + 1
                    found = f"{int(rows[column].iloc[first:last].sum())} sample(s) break it"
                    found += _time_step(record, lo, hi) if meta["rule"] == "timestamp_gap" else ""
                else:
                    found = f"found {column}={rows[column].iloc[first:last].max():.2f}"
                message = f"{record.where(lo, hi)}: {meta['text']}; {found}"
                findings.append(Finding(meta["rule"], Severity(meta["severity"]), message, str(record.path)))
    return findings


def _channel_findings(results: list, channels: pd.DataFrame, records: list[SensorRecord]) -> list[Finding]:
    findings = []
    for result in (r for r in results if not r.success):
        meta, column = result.expectation_config.meta, result.expectation_config.kwargs["column"]
        for _, row in channels[channels["key"].isin(_failing_keys(result))].iterrows():
            record = records[row["record"]]
            if meta["rule"] == "wrong_rate":
                detail = row["rate_detail"]
            elif meta["rule"] == "channel_count":
                detail = f"found {row['n_channels']} ({', '.join(record.channels)})"
            else:
                value = row[column]
                detail = (
                    f"found {column}={value:.3g}" if isinstance(value, float) else f"found {column}={value!r}"
                )
            message = f"channel {row['channel']!r}: {meta['text']}; {detail}"
            findings.append(Finding(meta["rule"], Severity(meta["severity"]), message, str(record.path)))
    return findings


def _alignment_finding(path: str, a: np.ndarray, b: np.ndarray, names: tuple[str, str], fs: float,
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
        _alignment_finding(str(record.path), record.samples[:, 0], record.samples[:, c],
                           (f"channel {record.channels[0]}", f"channel {record.channels[c]}"), record.fs, rules)
        for c in range(1, len(record.channels))
    ]  # fmt: skip
    return [f for f in found if f is not None]


def check_alignment(a: SensorRecord, b: SensorRecord, rules: SensorRules) -> list[Finding]:
    """Two sensors recorded in two files (same rate): how far the second lags the first."""
    if a.fs != b.fs:
        raise DataError(
            f"{b.path}: {b.fs:g} Hz against {a.path.name}'s {a.fs:g} Hz; resample before aligning"
        )
    names = (f"{a.path.name}:{a.channels[0]}", f"{b.path.name}:{b.channels[0]}")
    finding = _alignment_finding(str(b.path), a.samples[:, 0], b.samples[:, 0], names, a.fs, rules)
    return [finding] if finding else []


def _tables(records: list[SensorRecord], masks: list[dict], rules: SensorRules,
            expected_fs: float | None) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """All records' block and channel tables stacked, keyed "record:block" / "record:channel"."""
    blocks, channels = [], []
    for i, (record, mask) in enumerate(zip(records, masks, strict=True)):
        b, c = block_table(record, mask, rules), channel_table(record, expected_fs)
        blocks.append(b.assign(record=i, key=[f"{i}:{k}" for k in b["block"]]))
        channels.append(c.assign(record=i, key=[f"{i}:{k}" for k in c["channel"]], n_channels=len(c)))
    return pd.concat(blocks, ignore_index=True), pd.concat(channels, ignore_index=True)


def check_records(
    records: list[SensorRecord],
    rules: SensorRules,
    expected_fs: float | None = None,
    expected_channels: int | None = None,
    docs_dir: Path | None = None,
) -> list[CheckedRecord]:
    """Run both suites over all records at once (one GX validation each: ~0.5 s, not 0.5 s per record)."""
    masks = [sample_masks(record, rules) for record in records]
    blocks, channels = _tables(records, masks, rules, expected_fs)
    context, build = quiet_context(docs_dir), docs_dir is not None
    findings = _channel_findings(
        run_suite(context, channel_suite(rules, expected_channels), channels, "key", build), channels, records
    )
    findings += _block_findings(
        run_suite(context, block_suite(rules), blocks, "key", build), blocks, records, masks
    )
    checked = []
    for record, mask in zip(records, masks, strict=True):
        own = [f for f in findings if f.path == str(record.path)] + alignment_findings(record, rules)
        bad = {rule: m for rule, m in mask.items() if severity(rules, rule) == Severity.ERROR and m.any()}
        checked.append(CheckedRecord(record, own, bad))
    return checked


def check_record(record: SensorRecord, rules: SensorRules, expected_fs: float | None = None,
                 expected_channels: int | None = None, docs_dir: Path | None = None) -> CheckedRecord:  # fmt: skip
    """The checks on one record (see `check_records`)."""
    return check_records([record], rules, expected_fs, expected_channels, docs_dir)[0]
