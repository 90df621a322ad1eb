"""How a vibration model version is logged, judged and released.

The gate is two measured numbers from the honest protocol: the false-alarm rate on held-out
normal windows (<= max) and the AUROC over every fault window (>= min). Only `release_anomaly`
moves `champion`, and the flow calls it last, so a failed or killed run never does.
"""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import infer_signature

from core.card import read_card
from export.vibration.onnx import INPUT
from export.vibration.stage import AnomalyExport
from registry.config import VibrationPromotionConfig
from registry.gates import GateCheck, GateReport, record_gate
from registry.lifecycle import actor_name, reconcile, record_approval, release
from registry.publish import ONNX_PIP_REQUIREMENTS


def log_anomaly_model(export: AnomalyExport) -> str:
    """The ONNX file as an MLflow model with signature, example (the normal mean) and card; returns its URI."""
    import onnx

    mean = np.asarray(export.card["model"]["normal_profile"]["mean"], dtype=np.float32)[None]  # (1, F)
    signature = infer_signature({INPUT: mean}, np.zeros(1, dtype=np.float32))
    info = mlflow.onnx.log_model(
        onnx.load(str(export.path)), name="anomaly-onnx", signature=signature, input_example={INPUT: mean},
        onnx_execution_providers=["CPUExecutionProvider"], metadata={"card": export.card},
        save_as_external_data=False, pip_requirements=ONNX_PIP_REQUIREMENTS,
    )  # fmt: skip
    mlflow.log_artifact(str(export.card_path), "export")
    return info.model_uri


def gate_anomaly(cfg: VibrationPromotionConfig, metrics: dict[str, float]) -> GateReport:
    """False-alarm rate and AUROC against their limits; an unmeasured AUROC fails unless min_auroc is None."""
    far = metrics["false_alarm_rate"]
    report = GateReport([GateCheck("false_alarm_rate", far, cfg.max_false_alarm_rate, far <= cfg.max_false_alarm_rate,
                                   f"{far:.4f} on held-out normal windows (needs <= {cfg.max_false_alarm_rate:.4f})")])  # fmt: skip
    if cfg.min_auroc is not None:
        auroc = metrics.get("auroc_all_faults", float("nan"))
        measured = not math.isnan(auroc)
        detail = (f"{auroc:.4f} over all fault windows (needs >= {cfg.min_auroc:.4f})" if measured else
                  "not measured: no fault records in the data; add some or set promotion.min_auroc=null")  # fmt: skip
        report.checks.append(
            GateCheck(
                "auroc",
                auroc if measured else None,
                cfg.min_auroc,
                measured and auroc >= cfg.min_auroc,
                detail,
            )
        )
    return report


def release_anomaly(
    cfg: VibrationPromotionConfig, model: str, version: str, metrics: dict[str, float], flow: str
) -> tuple[GateReport, bool]:
    """Gate the registered candidate, record the result on the version, promote it when it passes."""
    client = mlflow.MlflowClient()
    reconcile(client, model)
    report = gate_anomaly(cfg, metrics)
    record_gate(client, model, version, report)
    if report.passed:
        record_approval(client, model, version, actor_name(flow), "gate")
    return report, release(client, model, version, report.to_dict(), report.passed, cfg.auto_promote, flow)


def file_metrics(card: dict) -> dict[str, float]:
    """The gate's numbers as the exported file itself scored them (export.vibration.stage); older cards
    carry only the protocol's, which the parity check tied to the file."""
    metrics = card["metrics"]
    return {
        "false_alarm_rate": metrics.get(
            "onnx_false_alarm_rate", metrics.get("false_alarm_rate", float("nan"))
        ),
        "auroc_all_faults": metrics.get(
            "onnx_auroc_all_faults", metrics.get("auroc_all_faults", float("nan"))
        ),
    }


def gate_file(cfg: VibrationPromotionConfig, model: str, version: str, candidate: Path) -> GateReport:
    """`registry approve`'s gate for a vibration model: the measurements the file carries, judged now."""
    client = mlflow.MlflowClient()
    report = gate_anomaly(cfg, file_metrics(read_card(candidate)))
    record_gate(client, model, version, report)
    return report
