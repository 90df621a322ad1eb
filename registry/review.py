"""What a reviewer reads in the MLflow UI before approving a model: a Markdown page per version.

The MLflow UI renders a model version's description and a run's description (`mlflow.note.content`)
as Markdown, so the page says what the reviewer would otherwise dig out of metrics, tags and JSON
artifacts: the headline figures, the promotion gate as a table, the edge file's fidelity and speed
with the CPU they were measured on, what the data checks found, and where the model came from.
"""

from __future__ import annotations

from collections.abc import Iterable

from registry.gates import GateReport

RUN_NOTE = "mlflow.note.content"


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def gate_section(report: GateReport) -> list[str]:
    verdict = "**passed**" if report.passed else "**failed**: " + "; ".join(report.failures())
    rows = [(c.name, _number(c.limit), _number(c.value), "pass" if c.passed else "**FAIL**", c.detail)
            for c in report.checks]  # fmt: skip
    return ["### Promotion gate", f"Verdict: {verdict}", "",
            *table(("gate", "threshold", "measured", "result", "detail"), rows)]  # fmt: skip


def data_section(counts: dict[str, int], label_issues: int | None) -> list[str]:
    rows = [(name.replace("_", " "), value) for name, value in counts.items()]
    if label_issues is not None:
        rows.append(("likely label errors (label review)", label_issues))
    return ["### Data checks", *table(("", "count"), rows)]


def lineage_section(lineage: dict[str, str]) -> list[str]:
    return ["### Lineage", *[f"- {key.replace('_', ' ')}: `{value}`" for key, value in lineage.items()]]


def reject_section(card: dict) -> list[str]:
    """The reject rule in words, where it put the threshold, and the held-out table to pick another from."""
    decision, measured = card["decision"], card["metrics"]
    if decision.get("defect_threshold") is None or "reject_table" not in measured:
        return []
    rule, point, found = (
        decision.get("reject_rule", {}),
        measured["operating_point"],
        measured["reject_table"],
    )
    rows = [(f"{row['threshold']:.4f}", f"{row['defect_recall']:.1%}", f"{row['false_reject_rate']:.1%}",
             "**shipped**" if abs(row["threshold"] - point["threshold"]) < 1e-9 else "")
            for row in found["rows"]]  # fmt: skip
    if not any(abs(row["threshold"] - point["threshold"]) < 1e-9 for row in found["rows"]):
        rows.append((f"{point['threshold']:.4f}", f"{point['defect_recall']:.1%}", f"{point['false_reject_rate']:.1%}", "**shipped**"))  # fmt: skip
        rows.sort(key=lambda row: -float(row[0]))
    said = rule.get("words") or rule.get("reason") or "not recorded"
    return ["### Reject rule",
            f"Rule: {said} ({rule.get('chosen_on', 'set by hand')}). The device rejects a part when its defect "
            f"probability (1 - P({decision['ok_class']})) >= **{point['threshold']:.4f}**: on held-out parts this file "
            f"caught **{point['defect_recall']:.1%}** of defects and rejected **{point['false_reject_rate']:.1%}** of good parts.",
            "", f"Other thresholds on the same held-out parts ({found['defect_parts']} defect, {found['good_parts']} good); "
            "`shopfloor registry set-threshold MODEL VERSION --threshold T` ships one without retraining:", "",
            *table(("threshold", "defects caught", "good parts rejected", ""), rows)]  # fmt: skip


def defect_page(title: str, test, gate: GateReport, export: dict[str, float], cpu: str,
                counts: dict[str, int], label_issues: int | None, lineage: dict[str, str],
                card: dict | None = None) -> str:  # fmt: skip
    """`test`: the held-out ClassificationMetrics; `export`: ExportReport.flat(); `card`: the shipped file's."""
    point = test.operating_point
    headline = f"**Test macro-F1 {test.macro_f1:.3f}** (balanced accuracy {test.balanced_accuracy:.3f}) on held-out parts."
    if point is not None:
        headline += (f" Operating point: reject when P(defect) >= {point.threshold:.3f}, which caught "
                     f"**{point.defect_recall:.1%} of defects** and rejected **{point.false_reject_rate:.1%} of good parts**.")  # fmt: skip
    per_class = [(name, f"{m['recall']:.3f}", f"{m['precision']:.3f}", int(m["support"]))
                 for name, m in test.per_class.items()]  # fmt: skip
    edge = [("macro-F1", f"{export['onnx_fp32_macro_f1']:.3f}", f"{export['onnx_int8_macro_f1']:.3f}"),
            ("size", f"{export['onnx_fp32_size_bytes'] / 1e6:.1f} MB", f"{export['onnx_int8_size_bytes'] / 1e6:.1f} MB"),
            ("latency p95, batch 1", f"{export['onnx_fp32_latency_ms_p95']:.1f} ms", f"{export['onnx_int8_latency_ms_p95']:.1f} ms")]  # fmt: skip
    return "\n".join([
        f"## {title}", headline, "",
        "### Per-class (test)", *table(("class", "recall", "precision", "parts"), per_class), "",
        *reject_section(card or {"decision": {}, "metrics": {}}), "",
        *gate_section(gate), "",
        "### Edge model (int8 ONNX, what devices run)", *table(("", "fp32", "int8"), edge),
        f"Top-1 agreement int8 vs fp32: {export['export_top1_agreement']:.3f}. Latency measured on {cpu}.", "",
        *data_section(counts, label_issues), "", *lineage_section(lineage), "",
        "Plots: the run's artifacts `evaluation/` (confusion matrix, per-class metrics, recall vs false rejects) "
        "and `augmentation/`; data checks in `data_checks/`.",
    ])  # fmt: skip


def anomaly_page(title: str, report, gate: GateReport, cpu: str, counts: dict[str, int],
                 lineage: dict[str, str]) -> str:  # fmt: skip
    """`report`: the vibration ProtocolReport (held-out normal windows and fault records)."""
    headline = (f"**False-alarm rate {report.false_alarm_rate:.2%}** on {report.test_normal_windows} held-out normal "
                f"windows; **AUROC {report.auroc_all_faults:.3f}** over all fault windows (worst record "
                f"{report.min_record_auroc:.3f}); alarm threshold {report.threshold:.4g}.")  # fmt: skip
    records = [(r.group, r.load, f"{r.auroc:.3f}", f"{r.detection_rate:.1%}") for r in report.records]
    return "\n".join([
        f"## {title}", headline, "",
        "### Fault records (held out)", *table(("fault", "load", "AUROC", "windows alarmed"), records), "",
        *gate_section(gate), "", f"Scoring runs on the device in ONNX Runtime; measured on {cpu}.", "",
        *data_section(counts, None), "", *lineage_section(lineage),
    ])  # fmt: skip


def image_anomaly_page(title: str, card: dict, gate: GateReport, cpu: str, counts: dict[str, int],
                       lineage: dict[str, str], beside: str = "") -> str:  # fmt: skip
    """`card`: the shipped file's (its metrics are the file's own on the frozen test parts); `beside`: the
    line's classifier on the same test parts, in words, when the line has one."""
    m, decision = card["metrics"], card["decision"]
    said = f"rejected **{m['onnx_test_false_reject_rate']:.1%} of {m['test_good']:.0f} good test parts**"
    if "onnx_test_defect_recall" in m:
        said += (f" and caught **{m['onnx_test_defect_recall']:.1%} of {m['test_defects']:.0f} defect parts** "
                 f"(AUROC {m['onnx_test_auroc']:.3f})")  # fmt: skip
    else:
        said += "; no labelled defect to measure recall on (a model from good parts only)"
    headline = (f"Fitted on {card['model']['good_training_images']} good images ({card['model']['memory_bank_patches']} "
                f"patches kept). Threshold {decision['threshold']:.4g}, set on validation good parts for "
                f"{decision['target_false_reject_rate']:.0%} false rejects; on held-out test parts the file {said}.")  # fmt: skip
    rows = [(part, _number(m.get(f"{part}_false_reject_rate")), _number(m.get(f"{part}_defect_recall")),
             _number(m.get(f"{part}_auroc"))) for part in ("val", "test")]  # fmt: skip
    return "\n".join([
        f"## {title}", headline, "", *table(("part", "false rejects", "defect recall", "AUROC"), rows), "",
        *([f"Beside it: {beside}", ""] if beside else []),
        *gate_section(gate), "",
        f"Edge file: fp32 ONNX, {m['onnx_size_bytes'] / 1e6:.1f} MB, p95 latency {m['onnx_latency_ms_p95']:.1f} ms "
        f"at batch 1 on {cpu}. Outputs: score and anomaly map.", "",
        *data_section(counts, None), "", *lineage_section(lineage), "",
        "Plots: the run's artifacts `evaluation/` (test scores against the threshold) and "
        "`evaluation/anomaly_maps/` (where the model sees a defect); data checks in `data_checks/`.",
    ])  # fmt: skip


def describe(client, model: str, version: str, run_id: str, page: str) -> None:
    """Put `page` on the version's page and the run's page in the MLflow UI."""
    client.update_model_version(model, version, description=page)
    client.set_tag(run_id, RUN_NOTE, page)
