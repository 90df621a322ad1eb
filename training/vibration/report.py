"""The protocol's numbers as tables: per fault group and load, and explanation accuracy per fault type."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from training.vibration.evaluate import ProtocolReport, RecordResult

IR_OR_SHOWING = {
    "IR": None,
    "OR": {0.007, 0.021},
}  # records whose envelope spectra show the order (data README)


def _share(records: list[RecordResult], key: str) -> int:
    return sum(r.matched.get(key, 0) for r in records)


def explanation_rows(report: ProtocolReport) -> list[dict]:
    """Per fault type (OR split by whether the data README says its spectrum shows BPFO): share of
    alarms whose explanation names the expected order, names another order, or names none."""
    groups: dict[str, list[RecordResult]] = defaultdict(list)
    for r in report.records:
        if r.expected_order is None:
            continue
        name = r.fault_type
        if r.fault_type == "OR":
            size = float(r.group.split()[1]) if len(r.group.split()) > 1 else None
            name = "OR (0.007, 0.021 in)" if size in IR_OR_SHOWING["OR"] else "OR (0.014 in)"
        groups[name].append(r)
    rows = []
    for name, records in sorted(groups.items()):
        alarms = sum(sum(r.matched.values()) for r in records)
        expected = records[0].expected_order
        right = _share(records, expected)
        none = _share(records, "none")
        rows.append({"fault_type": name, "expected": expected, "alarms": alarms,
                     "named_expected": right / max(alarms, 1), "named_other": (alarms - right - none) / max(alarms, 1),
                     "named_none": none / max(alarms, 1)})  # fmt: skip
    return rows


def group_rows(report: ProtocolReport) -> list[dict]:
    """One row per (fault group, load): records pooled."""
    groups: dict[tuple[str, str], list[RecordResult]] = defaultdict(list)
    for r in report.records:
        groups[(r.group, r.load)].append(r)
    rows = []
    for (group, load), records in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        accuracy = [r.explanation_accuracy for r in records if r.explanation_accuracy is not None]
        rows.append({"group": group, "load": load, "windows": sum(r.windows for r in records),
                     "auroc": float(np.mean([r.auroc for r in records])),
                     "detection_rate": float(np.mean([r.detection_rate for r in records])),
                     "explanation_accuracy": float(np.mean(accuracy)) if accuracy else None})  # fmt: skip
    return rows


def markdown(rows: list[dict], columns: list[str]) -> str:
    def show(value: object) -> str:
        if value is None:
            return "-"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(show(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def protocol_markdown(report: ProtocolReport) -> str:
    head = (
        f"**{report.model}**: false-alarm rate on held-out normal {report.false_alarm_rate:.4f} "
        f"({report.false_alarms}/{report.test_normal_windows} windows; calibration {report.calibration_false_alarm_rate:.4f}), "
        f"AUROC over all fault windows {report.auroc_all_faults:.4f} (lowest record {report.min_record_auroc:.4f}), "
        f"threshold {report.threshold:.4g}"
    )
    groups = markdown(
        group_rows(report), ["group", "load", "windows", "auroc", "detection_rate", "explanation_accuracy"]
    )
    explained = markdown(
        explanation_rows(report),
        ["fault_type", "expected", "alarms", "named_expected", "named_other", "named_none"],
    )
    return f"{head}\n\n{groups}\n\nExplanations of alarms:\n\n{explained}\n"
