"""Figures people would rather look at than tables: confusion matrix, per-class bars, the reject trade-off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # the object API: no GUI backend, no global pyplot state

from training.images.metrics import ClassificationMetrics, OperatingPoint, defect_scores


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def confusion_matrix_png(metrics: ClassificationMetrics, path: Path) -> Path:
    """Counts in each cell, colour by row share (recall), so rare classes are as visible as common ones."""
    counts = np.asarray(metrics.confusion)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n = len(metrics.classes)
    figure = Figure(figsize=(1.1 * n + 2, 1.0 * n + 1.5))
    axis = figure.subplots()
    axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            axis.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
            )
    axis.set_xticks(range(n), metrics.classes, rotation=45, ha="right")
    axis.set_yticks(range(n), metrics.classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"test: macro-F1 {metrics.macro_f1:.3f}, balanced acc. {metrics.balanced_accuracy:.3f}")
    return _save(figure, path)


def per_class_png(metrics: ClassificationMetrics, path: Path) -> Path:
    names = list(metrics.classes)
    x = np.arange(len(names))
    figure = Figure(figsize=(1.2 * len(names) + 2, 3.5))
    axis = figure.subplots()
    for offset, key in zip((-0.25, 0.0, 0.25), ("precision", "recall", "f1"), strict=True):
        axis.bar(x + offset, [metrics.per_class[c][key] for c in names], width=0.25, label=key)
    axis.set_xticks(x, [f"{c}\n(n={metrics.per_class[c]['support']})" for c in names], fontsize=8)
    axis.set_ylim(0, 1.05)
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title("per-class metrics on held-out parts")
    return _save(figure, path)


def reject_curve_png(labels: np.ndarray, proba: np.ndarray, ok_index: int, chosen: OperatingPoint | None,
                     path: Path) -> Path:  # fmt: skip
    """Defect recall against the share of good parts rejected, over every threshold, on held-out
    parts: the trade a line manager picks a point on. The point chosen on validation is marked."""
    scores, is_defect = defect_scores(proba, ok_index), labels != ok_index
    thresholds = np.unique(np.concatenate([scores, [0.0, 1.0 + 1e-9]]))[::-1]
    recall = [(scores[is_defect] >= t).mean() if is_defect.any() else np.nan for t in thresholds]
    false_reject = [(scores[~is_defect] >= t).mean() if (~is_defect).any() else np.nan for t in thresholds]
    figure = Figure(figsize=(4.8, 4.0))
    axis = figure.subplots()
    axis.step(false_reject, recall, where="post", label="held-out parts")
    if chosen is not None:
        axis.plot([chosen.false_reject_rate], [chosen.defect_recall], "o", color="C3",
                  label=f"threshold {chosen.threshold:.3f}: recall {chosen.defect_recall:.2f}, "
                        f"false rejects {chosen.false_reject_rate:.2f}")  # fmt: skip
    axis.set_xlabel("good parts rejected (false-reject rate)")
    axis.set_ylabel("defects caught (defect recall)")
    axis.set_xlim(-0.02, 1.02)
    axis.set_ylim(-0.02, 1.02)
    axis.legend(loc="lower right", fontsize=7)
    axis.set_title("recall vs false rejects (test)")
    return _save(figure, path)
