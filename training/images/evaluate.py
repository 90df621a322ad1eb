"""Predict with a trained classifier and score it: metrics, operating point, plots."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inputs.images import channels_first
from training.images.checkpoint import load_model, save_checkpoint
from training.images.config import EvalConfig
from training.images.data import split_indices, training_data
from training.images.device import autocast
from training.images.metrics import (
    ClassificationMetrics,
    OperatingPoint,
    classification_metrics,
    operating_point,
)
from training.images.model import DefectClassifier
from training.images.plots import confusion_matrix_png, per_class_png, reject_curve_png
from training.images.reject_rule import choose_operating_point, good_class, reject_table


@torch.inference_mode()
def predict_proba(
    model: DefectClassifier, images: np.ndarray, device: torch.device, batch_size: int = 64
) -> np.ndarray:
    """Class probabilities (N, C) for uint8 images (N, S, S) grey or (N, S, S, 3) RGB."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        pixels = torch.from_numpy(channels_first(images[start : start + batch_size]))  # (B, C, S, S)
        pixels = pixels.to(device).contiguous(memory_format=torch.channels_last)
        with autocast(device):
            proba = model(pixels).float().softmax(1)
        out.append(proba.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(model.spec.classes)), np.float32)


@dataclass(frozen=True)
class EvalResult:
    test: ClassificationMetrics
    val: ClassificationMetrics
    test_proba: np.ndarray
    plots: dict[str, Path]
    reject_table: dict | None = None  # recall vs false rejects on the test part (reject_rule.reject_table)


def evaluate_split(
    model: DefectClassifier,
    images: np.ndarray,
    labels: np.ndarray,
    val_idx: np.ndarray,
    test_idx: np.ndarray,
    cfg: EvalConfig,
    device: torch.device,
    out_dir: Path,
) -> EvalResult:
    """Choose the reject threshold on validation, then score the untouched test part with it."""
    val_proba = predict_proba(model, images[val_idx], device)
    test_proba = predict_proba(model, images[test_idx], device)
    return score_probabilities(
        val_proba, test_proba, labels[val_idx], labels[test_idx], model.spec.classes, cfg, out_dir
    )


def score_probabilities(
    val_proba: np.ndarray,
    test_proba: np.ndarray,
    val_labels: np.ndarray,
    test_labels: np.ndarray,
    classes: tuple[str, ...],
    cfg: EvalConfig,
    out_dir: Path,
) -> EvalResult:
    """`evaluate_split` from probabilities already computed (one model's, or several averaged)."""
    val_point: OperatingPoint | None = None
    test_point: OperatingPoint | None = None
    if cfg.ok_class in classes:  # resolved by good_class in evaluate_checkpoint
        ok = classes.index(cfg.ok_class)
        val_point = choose_operating_point(val_labels, val_proba, ok, cfg.reject_rule)
        test_point = operating_point(test_labels, test_proba, ok, val_point.threshold)
    val = classification_metrics(val_labels, val_proba, classes, val_point)
    test = classification_metrics(test_labels, test_proba, classes, test_point)
    plots = {
        "confusion_matrix": confusion_matrix_png(test, out_dir / "confusion_matrix.png"),
        "per_class_metrics": per_class_png(test, out_dir / "per_class_metrics.png"),
    }
    if test_point is not None:
        curve = reject_curve_png(
            test_labels, test_proba, ok, test_point, out_dir / "recall_vs_false_reject.png"
        )
        plots["recall_vs_false_reject"] = curve
    table = reject_table(test_labels, test_proba, ok) if test_point is not None else None
    return EvalResult(test, val, test_proba, plots, table)


def evaluate_checkpoint(
    checkpoint: Path,
    manifest,
    classes: list[str],
    cfg: EvalConfig,
    out_dir: Path,
    cache_dir: Path | None = None,
) -> tuple[EvalResult, Path]:
    """Stage function: score `checkpoint` on the manifest's val/test parts and write `model.pt`.

    `model.pt` is the checkpoint plus what serving needs to decide: the reject threshold and
    the class it is relative to, and the metrics measured here, so the file describes itself.
    """
    good, note = good_class(classes, cfg.ok_class)
    if note:
        warnings.warn(note, stacklevel=2)
    cfg = cfg.model_copy(update={"ok_class": good})
    model, payload = load_model(checkpoint)
    data = training_data(manifest, classes, model.spec.image_size, cache_dir, model.spec.channels == 3)
    parts = split_indices(manifest)
    result = evaluate_split(
        model, data.images, data.labels, parts["val"], parts["test"], cfg, torch.device("cpu"), out_dir
    )
    decision = reject_decision(cfg, result.val)
    model_path = save_checkpoint(
        out_dir / "model.pt",
        model,
        decision=decision,
        metrics={"test": result.test.to_dict(), "val": result.val.to_dict()},
        history=payload.get("history", []),
    )
    return result, model_path


def reject_decision(cfg: EvalConfig, val: ClassificationMetrics) -> dict:
    """What a device needs to decide (ok class, threshold) and the rule that set the threshold, in words."""
    point = val.operating_point
    if point is None:
        return {"ok_class": cfg.ok_class, "defect_threshold": None}
    support = {name: m["support"] for name, m in val.per_class.items()}
    good = support.get(cfg.ok_class, 0)
    rule = cfg.reject_rule.model_dump(exclude_none=True) | {
        "words": cfg.reject_rule.words(),
        "chosen_on": f"validation: {good} good and {sum(support.values()) - good} defect parts",
        "validation_defect_recall": point.defect_recall, "validation_false_reject_rate": point.false_reject_rate,
    }  # fmt: skip
    return {"ok_class": cfg.ok_class, "defect_threshold": point.threshold, "reject_rule": rule}
