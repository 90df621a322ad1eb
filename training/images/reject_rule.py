"""The reject threshold from the line's rule, and the recall vs false-reject table a line manager picks from.

A part is rejected when its defect probability, 1 - P(ok class), reaches the threshold. On a set of
scored parts only the cuts between neighbouring distinct scores change anything, so every rule looks
at those cuts, takes the one it prefers, and the threshold sits halfway between the two scores
around it (the same decisions on that set, with a margin on both sides for new parts):

- target false-reject rate: most defects caught among cuts rejecting at most that share of good parts;
- target defect recall: fewest good parts rejected among cuts catching at least that share of defects;
- missed-defect cost C: lowest `C x missed defects + good parts rejected`.

Ties go to the higher threshold (fewer rejections). `reject_table` applies a grid of such targets to
held-out parts: each row is a threshold with the recall and false-reject rate measured there.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import numpy as np

from core.errors import ConfigError
from training.images.config import RejectRule
from training.images.metrics import OperatingPoint, defect_scores, operating_point

GOOD_NAMES = frozenset({"good", "ok", "free", "functional", "normal"})
FALSE_REJECT_GRID = (0.0, 0.01, 0.02, 0.05, 0.10, 0.15, 0.20, 0.30, 0.50)
RECALL_GRID = (0.50, 0.80, 0.90, 0.95, 0.97, 0.99, 1.0)


def good_class(classes: list[str] | tuple[str, ...], declared: str | None) -> tuple[str | None, str | None]:
    """The class of good parts and what to tell the user about it: the declared one (nothing to tell),
    else the one class whose name says so (a word of it is good, ok, free, functional or normal), else
    None: no reject decision, classes only. Returned, not logged, so the caller says it where people look."""
    if declared is not None:
        if declared not in classes:
            raise ConfigError(
                f"eval.ok_class {declared!r} is not a class of this data ({', '.join(classes)}); "
                "name the good class with --good CLASS"
            )
        return declared, None
    found = [name for name in classes if set(re.split(r"[^a-z]+", name.lower())) & GOOD_NAMES]
    if len(found) == 1:
        return found[
            0
        ], f"good class not declared: using {found[0]!r}, its name says so (declare it with --good CLASS)"
    said = "no class is named like one" if not found else f"{', '.join(found)} all look like one"
    return (
        None,
        f"no good class declared and {said}: no reject decision, classes only (declare it with --good CLASS)",
    )


def check_declared_good_class(data: Path, declared: str | None) -> None:
    """A declared good class the data lacks fails in the first seconds, from the class names alone
    (folders or the manifest's labels), before the checks read a pixel or Prefect starts."""
    from data_checks.images.manifest import load_dataset

    if declared is not None:
        good_class(sorted(load_dataset(data).manifest["label"].unique()), declared)


def cuts(scores: np.ndarray) -> np.ndarray:
    """Candidate thresholds, highest first: above every score, between neighbours, below every score."""
    values = np.unique(scores)[::-1]
    if values.size == 0:
        return np.array([0.5])
    top = (values[0] + 1.0) / 2 if values[0] < 1 else np.nextafter(1.0, 2.0)
    return np.concatenate([[top], (values[:-1] + values[1:]) / 2, [values[-1] / 2]])


def _rates(y_true: np.ndarray, scores: np.ndarray, ok_index: int, thresholds: np.ndarray):
    """(defect recall, false-reject rate, missed defects, good parts rejected) at each threshold."""
    defect = np.sort(scores[y_true != ok_index])
    good = np.sort(scores[y_true == ok_index])
    caught = defect.size - np.searchsorted(defect, thresholds, side="left")
    rejected = good.size - np.searchsorted(good, thresholds, side="left")
    recall = caught / defect.size if defect.size else np.full(thresholds.shape, np.nan)
    false_reject = rejected / good.size if good.size else np.full(thresholds.shape, np.nan)
    return recall, false_reject, defect.size - caught, rejected


def choose_operating_point(
    y_true: np.ndarray, proba: np.ndarray, ok_index: int, rule: RejectRule
) -> OperatingPoint:
    """The threshold `rule` prefers on these (validation) parts, with what it measures there."""
    scores = defect_scores(proba, ok_index)
    if not (y_true != ok_index).any() or not (y_true == ok_index).any():
        return operating_point(y_true, proba, ok_index, 0.5)  # one side missing: nothing to trade off
    thresholds = cuts(scores)
    return operating_point(
        y_true, proba, ok_index, float(thresholds[_preferred(y_true, scores, ok_index, thresholds, rule)])
    )


def _preferred(y_true, scores, ok_index, thresholds, rule: RejectRule) -> int:
    """Index of the preferred cut (thresholds run highest first, so argmax/argmin ties keep the higher)."""
    recall, false_reject, missed, rejected = _rates(y_true, scores, ok_index, thresholds)
    if rule.target_false_reject_rate is not None:
        allowed = false_reject <= rule.target_false_reject_rate + 1e-12
        return int(np.argmax(np.where(allowed, recall, -1.0)))  # the first cut is always allowed
    if rule.target_defect_recall is not None:
        reaching = recall >= rule.target_defect_recall - 1e-12
        return int(np.argmin(np.where(reaching, false_reject, np.inf)))  # the last cut always reaches
    return int(np.argmin(rule.missed_defect_cost * missed + rejected))


def reject_table(y_true: np.ndarray, proba: np.ndarray, ok_index: int) -> dict:
    """Recall vs false rejects on held-out parts at the thresholds a grid of targets picks, highest first."""
    points = {}
    for target in FALSE_REJECT_GRID:
        point = choose_operating_point(y_true, proba, ok_index, RejectRule(target_false_reject_rate=target))
        points[point.threshold] = point
    for target in RECALL_GRID:
        point = choose_operating_point(y_true, proba, ok_index, RejectRule(target_defect_recall=target))
        points[point.threshold] = point
    rows = [asdict(points[t]) for t in sorted(points, reverse=True)]
    return {
        "defect_parts": int((y_true != ok_index).sum()),
        "good_parts": int((y_true == ok_index).sum()),
        "rows": [
            row
            | {
                "defect_recall": round(row["defect_recall"], 4),
                "false_reject_rate": round(row["false_reject_rate"], 4),
            }
            for row in rows
        ],  # fmt: skip
    }


def row_for(table: dict, false_reject_rate: float | None = None, defect_recall: float | None = None) -> dict:
    """The table's row a line manager means: most defects caught within a false-reject rate, or fewest
    good parts rejected reaching a recall; None when no row qualifies."""
    rows = table["rows"]
    if false_reject_rate is not None:
        within = [r for r in rows if r["false_reject_rate"] <= false_reject_rate + 1e-9]
        return max(within, key=lambda r: (r["defect_recall"], r["threshold"]), default=None)
    reaching = [r for r in rows if r["defect_recall"] >= (defect_recall or 0) - 1e-9]
    return min(reaching, key=lambda r: (r["false_reject_rate"], -r["threshold"]), default=None)
