"""The promotion gate: a candidate becomes champion only when the int8 ONNX file that ships passes.

Absolute gates (config): minimum macro-F1, minimum recall of every class, maximum int8 macro-F1
drop against fp32, minimum int8/fp32 top-1 agreement, maximum p95 latency at batch 1 on the CPU.
Relative gate: not worse than the current champion's shipped file on the same frozen
evaluation set, both scored now, by the same code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from registry.config import PromotionConfig  # noqa: F401  (re-exported: the stage and its settings)
from registry.gates import GateCheck, GateReport
from registry.onnx_export import read_card, run_onnx, session
from training.metrics import classification_metrics
from training.preprocess import load_batch


def score_onnx(path: Path, frozen: pd.DataFrame) -> dict:
    """Macro-F1 and per-class recall of an exported file on the frozen set, fed as its card says."""
    card = read_card(path)
    classes = card["classes"]
    grey = load_batch(frozen["path"].tolist(), card["input"]["image_size"])
    labels = np.array([classes.index(label) for label in frozen["label"]])
    proba = run_onnx(session(path), grey)
    metrics = classification_metrics(labels, proba, tuple(classes))
    return {"macro_f1": metrics.macro_f1, "recall": {c: v["recall"] for c, v in metrics.per_class.items()}}


def _check(name: str, value: float, limit: float, higher_is_better: bool, unit: str = "") -> GateCheck:
    passed = value >= limit if higher_is_better else value <= limit
    sign = ">=" if higher_is_better else "<="
    return GateCheck(name, value, limit, passed, f"{value:.3f}{unit} (needs {sign} {limit:.3f}{unit})")


def judge(
    cfg: PromotionConfig, candidate: Path, export_metrics: dict, frozen: pd.DataFrame, champion: Path | None
) -> GateReport:
    """Run every gate on the candidate's int8 file; `export_metrics` comes from ExportReport.flat()."""
    scored = score_onnx(candidate, frozen)
    report = GateReport()
    report.checks.append(_check("int8_macro_f1", scored["macro_f1"], cfg.min_macro_f1, True))
    worst_class, worst = min(scored["recall"].items(), key=lambda kv: kv[1])
    report.checks.append(_check(f"min_class_recall ({worst_class})", worst, cfg.min_class_recall, True))
    report.checks.append(
        _check("int8_macro_f1_drop", export_metrics["int8_macro_f1_drop"], cfg.max_int8_macro_f1_drop, False)
    )
    report.checks.append(
        _check("int8_top1_agreement", export_metrics["export_top1_agreement"], cfg.min_top1_agreement, True)
    )
    report.checks.append(
        _check(
            "int8_latency_p95",
            export_metrics["onnx_int8_latency_ms_p95"],
            cfg.max_latency_ms_p95,
            False,
            " ms",
        )
    )
    if cfg.not_worse_than_champion:
        if champion is None:
            report.checks.append(GateCheck("not_worse_than_champion", None, None, True, "no champion yet"))
        else:
            theirs = score_onnx(champion, frozen)["macro_f1"]
            report.checks.append(
                _check("not_worse_than_champion", scored["macro_f1"], theirs - cfg.champion_tolerance, True)
            )
    return report
