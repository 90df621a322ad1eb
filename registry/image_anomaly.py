"""How an image anomaly model version is logged, judged and released.

The gate reads the figures the exported file itself measured on the line's frozen test parts (its card:
export.images.patchcore.file_figures): good parts rejected at its threshold (<= max), and where the
line has labelled defects, the share caught (>= min) and AUROC (>= min). A line with no labelled defect
yet is judged on false rejects alone; the unmeasured checks pass and say why, so the first model from
good parts can ship and the page tells the reviewer what was not measured. `release_image_anomaly` runs
last in the flow, so a failed run never moves `champion`.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import infer_signature

from core.card import IMAGE_ANOMALY, IMAGE_CLASSIFIER, read_card
from export.images.onnx import INPUT
from export.images.patchcore import ANOMALY_MAP, SCORE, ImageAnomalyExport
from registry.config import ImageAnomalyPromotionConfig
from registry.gates import GateCheck, GateReport, record_gate
from registry.lifecycle import CHAMPION, actor_name, alias_version, reconcile, record_approval, release
from registry.lines import LINE_TAG
from registry.publish import ONNX_PIP_REQUIREMENTS
from training.images.anomaly import AnomalyImages

# registered-model tag: a line's anomaly model is told from its classifier without a download
KIND_TAG = "kind"
NO_DEFECTS = "not measured: no labelled defect among the test parts (judged on false rejects alone)"


def mark_kind(client, model: str) -> None:
    client.set_registered_model_tag(model, KIND_TAG, IMAGE_ANOMALY)


def log_image_anomaly_model(export: ImageAnomalyExport) -> str:
    """The ONNX file as an MLflow model with signature, example and card; returns its URI."""
    import onnx

    shape = export.card["input"]["shape"][1:]  # (C, S, S)
    example = np.full([1, *shape], 128.0, dtype=np.float32)
    outputs = {SCORE: np.zeros(1, np.float32), ANOMALY_MAP: np.zeros((1, 1, *shape[1:]), np.float32)}
    info = mlflow.onnx.log_model(
        onnx.load(str(export.path)), name="image-anomaly-onnx", signature=infer_signature({INPUT: example}, outputs),
        input_example={INPUT: example}, onnx_execution_providers=["CPUExecutionProvider"],
        metadata={"card": export.card}, save_as_external_data=False, pip_requirements=ONNX_PIP_REQUIREMENTS,
    )  # fmt: skip
    mlflow.log_artifact(str(export.card_path), "export")
    return info.model_uri


def _bound(name: str, value: float | None, limit: float | None, higher: bool, words: str) -> GateCheck | None:
    if limit is None:
        return None
    if value is None or math.isnan(value):
        return GateCheck(name, None, limit, True, NO_DEFECTS)
    passed = value >= limit if higher else value <= limit
    return GateCheck(
        name, value, limit, passed, f"{value:.3f} {words} (needs {'>=' if higher else '<='} {limit:.3f})"
    )


def gate_image_anomaly(cfg: ImageAnomalyPromotionConfig, metrics: dict[str, float]) -> GateReport:
    """`metrics`: the card's (the file's own `onnx_test_*` figures)."""
    frr = metrics.get("onnx_test_false_reject_rate", math.nan)
    checks = [
        _bound("false_reject_rate", frr, cfg.max_false_reject_rate, False, "of good test parts rejected"),
        _bound("defect_recall", metrics.get("onnx_test_defect_recall"), cfg.min_defect_recall, True,
               "of defect test parts caught"),
        _bound("auroc", metrics.get("onnx_test_auroc"), cfg.min_auroc, True, "defect vs good, test parts"),
    ]  # fmt: skip
    if math.isnan(frr):  # no good test part: nothing says how often good parts would be thrown away
        checks[0] = GateCheck("false_reject_rate", None, cfg.max_false_reject_rate, False,
                              "not measured: no good part among the test parts")  # fmt: skip
    return GateReport([c for c in checks if c is not None])


def release_image_anomaly(cfg: ImageAnomalyPromotionConfig, model: str, version: str, card: dict,
                          flow: str) -> tuple[GateReport, bool]:  # fmt: skip
    """Gate the registered candidate on its card's figures, record it, promote it when it passes."""
    client = mlflow.MlflowClient()
    reconcile(client, model)
    report = gate_image_anomaly(cfg, card["metrics"])
    record_gate(client, model, version, report)
    if report.passed:
        record_approval(client, model, version, actor_name(flow), "gate")
    return report, release(client, model, version, report.to_dict(), report.passed, cfg.auto_promote, flow)


def gate_file(cfg: ImageAnomalyPromotionConfig, model: str, version: str, candidate: Path) -> GateReport:
    """`registry approve`'s gate for an image anomaly model: the figures the file carries, judged now."""
    report = gate_image_anomaly(cfg, read_card(candidate)["metrics"])
    record_gate(mlflow.MlflowClient(), model, version, report)
    return report


def score_file(path: Path, images: list[str]) -> np.ndarray:
    """Anomaly scores (N,) of image files as the exported file scores them, fed as its card says."""
    from core.onnx_runtime import run_batched, session
    from inputs.images import card_colour, load_batch

    card = read_card(path)
    pixels = load_batch(images, card["input"]["preprocessing"]["image_size"], card_colour(card))
    return run_batched(session(path), pixels, batch=16)


def line_classifier(client, line: str) -> tuple[str, str] | None:
    """(name, champion version) of the line's image classifier, or None when it has none."""
    for found in client.search_registered_models(filter_string=f"tags.{LINE_TAG} = '{line}'"):
        if found.tags.get(KIND_TAG, IMAGE_CLASSIFIER) != IMAGE_CLASSIFIER:
            continue
        version = alias_version(client, found.name, CHAMPION)
        if version is not None:
            return found.name, version
    return None


def line_classifier_beside(
    client, line: str, data: AnomalyImages, classes: list[str]
) -> tuple[str, dict[str, float]]:
    """The line's classifier champion scored now on the same test parts at its own threshold: words for
    the version page and `classifier_test_*` metrics; ("", {}) without one, or when it makes no reject
    decision or knows other classes."""
    import pandas as pd

    from registry.artifacts import shipped_file
    from registry.images import score_onnx

    champion = line_classifier(client, line)
    if champion is None:
        return "", {}
    rows = data.part("test")
    frozen = pd.DataFrame({"path": [data.paths[i] for i in rows], "label": [data.labels[i] for i in rows]})
    with tempfile.TemporaryDirectory() as scratch:
        path = shipped_file(*champion, Path(scratch))
        card = read_card(path)
        if card["kind"] != IMAGE_CLASSIFIER or not set(frozen["label"]) <= set(card["model"]["classes"]):
            return "", {}
        point = score_onnx(path, frozen)["operating_point"]
    if point is None:
        return "", {}
    words = (f"the line's classifier {champion[0]} v{champion[1]} (champion), on the same test parts at its own "
             f"threshold, caught {point.defect_recall:.1%} of defect parts and rejected {point.false_reject_rate:.1%} of good ones")  # fmt: skip
    return words, {"classifier_test_defect_recall": point.defect_recall,
                   "classifier_test_false_reject_rate": point.false_reject_rate}  # fmt: skip
