"""The raw-sensor rules (data_checks.vibration.rules) as great-expectations suites, with Data Docs.

numpy measures (vectorised, per sample) where each rule breaks; GX validates two small tables
built from those measurements, one row per channel and one row per block of `block_s` seconds,
so every failure maps to a `Finding` naming the file, the rule and the sample range. This is the
data gate before training; scoring screens files with the same rules without GX
(`rules.screen_record`). An RMS jump or a channel offset in time is only a warning.
"""

from __future__ import annotations

from pathlib import Path

import great_expectations as gx
import numpy as np
import pandas as pd

from core.errors import DataError
from data_checks.findings import Finding, Severity
from data_checks.gx_context import quiet_context, run_suite
from data_checks.vibration.config import SensorRules
from data_checks.vibration.measure import block_measurements, channel_measurements, sample_masks
from data_checks.vibration.rules import (
    SAMPLE_RULES,
    CheckedRecord,
    alignment_finding,
    alignment_findings,
    channel_detail,
    channel_rules,
    error_masks,
    runs,
    severity,
)
from inputs.vibration.signals import SensorRecord


def _meta(rule: str, rules: SensorRules, text: str) -> dict:
    return {"rule": rule, "severity": str(severity(rules, rule)), "text": text}


def block_suite(rules: SensorRules) -> gx.ExpectationSuite:
    """Per-block expectations: every sample-level rule is a count that must be zero."""
    e = gx.expectations
    expectations = [
        e.ExpectColumnValuesToBeBetween(column=column, max_value=0, meta=_meta(rule, rules, text))
        for column, (rule, text) in SAMPLE_RULES.items()
    ]
    jump = f"block RMS must stay within {rules.max_rms_jump:g}x the previous block's"
    expectations.append(
        e.ExpectColumnValuesToBeBetween(
            column="rms_jump", max_value=rules.max_rms_jump, meta=_meta("rms_jump", rules, jump)
        )
    )
    return gx.ExpectationSuite(name="sensor_blocks", expectations=expectations)


def channel_suite(rules: SensorRules, expected_channels: int | None) -> gx.ExpectationSuite:
    """Per-channel expectations, one per rule of `rules.CHANNEL_RULES`."""
    e = gx.expectations
    expectations = []
    for rule in channel_rules(expected_channels):
        meta = _meta(rule.rule, rules, rule.text(rules, expected_channels))
        if rule.allowed is not None:
            allowed = rule.allowed(rules, expected_channels)
            expectations.append(
                e.ExpectColumnValuesToBeInSet(column=rule.column, value_set=allowed, meta=meta)
            )
        else:
            high = rule.high(rules) if rule.high is not None else None
            expectations.append(
                e.ExpectColumnValuesToBeBetween(
                    column=rule.column, min_value=rule.low, max_value=high, meta=meta
                )
            )
    return gx.ExpectationSuite(name="sensor_channels", expectations=expectations)


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
            for first, last in runs(failing[mine]):
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
            value = row[column].item() if hasattr(row[column], "item") else row[column]
            detail = channel_detail(meta["rule"], column, value, record, row["rate_detail"])
            message = f"channel {row['channel']!r}: {meta['text']}; {detail}"
            findings.append(Finding(meta["rule"], Severity(meta["severity"]), message, str(record.path)))
    return findings


def check_alignment(a: SensorRecord, b: SensorRecord, rules: SensorRules) -> list[Finding]:
    """Two sensors recorded in two files (same rate): how far the second lags the first."""
    if a.fs != b.fs:
        raise DataError(
            f"{b.path}: {b.fs:g} Hz against {a.path.name}'s {a.fs:g} Hz; resample before aligning"
        )
    names = (f"{a.path.name}:{a.channels[0]}", f"{b.path.name}:{b.channels[0]}")
    finding = alignment_finding(str(b.path), a.samples[:, 0], b.samples[:, 0], names, a.fs, rules)
    return [finding] if finding else []


def _tables(records: list[SensorRecord], masks: list[dict], rules: SensorRules,
            expected_fs: float | None) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """All records' block and channel tables stacked, keyed "record:block" / "record:channel"."""
    blocks, channels = [], []
    for i, (record, mask) in enumerate(zip(records, masks, strict=True)):
        b = pd.DataFrame(block_measurements(record, mask, rules))
        c = pd.DataFrame(channel_measurements(record, expected_fs))
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
        checked.append(CheckedRecord(record, own, error_masks(mask, rules)))
    return checked


def check_record(record: SensorRecord, rules: SensorRules, expected_fs: float | None = None,
                 expected_channels: int | None = None, docs_dir: Path | None = None) -> CheckedRecord:  # fmt: skip
    """The checks on one record (see `check_records`)."""
    return check_records([record], rules, expected_fs, expected_channels, docs_dir)[0]
