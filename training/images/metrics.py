"""Classification metrics for rare defects, and the defect / no-defect operating point.

Accuracy is meaningless at 30:1 imbalance (predict "free" everywhere: 71 %), so the headline is
macro-F1 with balanced accuracy and per-class recall beside it. On the line the question is
binary: reject the part or not, at a threshold on P(defect) that the line's rule picks
(training.images.reject_rule).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    return float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0))


@dataclass(frozen=True)
class OperatingPoint:
    """Reject a part when P(defect) = 1 - P(ok) >= threshold."""

    threshold: float
    defect_recall: float
    false_reject_rate: float


@dataclass(frozen=True)
class ClassificationMetrics:
    macro_f1: float
    balanced_accuracy: float
    accuracy: float
    per_class: dict[str, dict[str, float]]  # class -> precision, recall, f1, support
    confusion: list[list[int]]  # rows true, columns predicted
    classes: tuple[str, ...]
    operating_point: OperatingPoint | None = None

    def flat(self, prefix: str = "") -> dict[str, float]:
        """Scalar metrics with MLflow-friendly names."""
        out = {
            f"{prefix}macro_f1": self.macro_f1,
            f"{prefix}balanced_accuracy": self.balanced_accuracy,
            f"{prefix}accuracy": self.accuracy,
        }
        for name, values in self.per_class.items():
            out[f"{prefix}recall_{name}"] = values["recall"]
            out[f"{prefix}f1_{name}"] = values["f1"]
        if self.operating_point is not None:
            out[f"{prefix}defect_recall"] = self.operating_point.defect_recall
            out[f"{prefix}false_reject_rate"] = self.operating_point.false_reject_rate
            out[f"{prefix}defect_threshold"] = self.operating_point.threshold
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def classification_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: tuple[str, ...],
    operating_point: OperatingPoint | None = None,
) -> ClassificationMetrics:
    labels = list(range(len(classes)))
    y_pred = proba.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        c: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    }
    return ClassificationMetrics(
        macro_f1=macro_f1(y_true, y_pred, len(classes)),
        balanced_accuracy=float(balanced_accuracy_score(y_true, y_pred))
        if len(set(y_true)) > 1
        else float(recall[y_true[0]]),
        accuracy=float((y_pred == y_true).mean()),
        per_class=per_class,
        confusion=confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        classes=tuple(classes),
        operating_point=operating_point,
    )


def defect_scores(proba: np.ndarray, ok_index: int) -> np.ndarray:
    return 1.0 - proba[:, ok_index]


def operating_point(y_true: np.ndarray, proba: np.ndarray, ok_index: int, threshold: float) -> OperatingPoint:
    """Defect recall and false-reject rate when rejecting at `threshold`."""
    rejected = defect_scores(proba, ok_index) >= threshold
    is_defect = y_true != ok_index
    recall = float(rejected[is_defect].mean()) if is_defect.any() else float("nan")
    false_reject = float(rejected[~is_defect].mean()) if (~is_defect).any() else float("nan")
    return OperatingPoint(float(threshold), recall, false_reject)
