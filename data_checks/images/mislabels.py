"""Likely label errors by confident learning (Northcutt, Jiang & Chuang, JAIR 2021).

Input: each item's given label and *out-of-fold* predicted class probabilities (from a model
that never saw the item). An item is a label issue when the model is confident, by the class's
own average confidence as threshold, that it belongs to another class. Items are ranked by
self-confidence (the probability the model gives the given label), lowest first, so a reviewer
starts with the most suspicious ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def per_class_thresholds(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """t_j = mean predicted probability of class j over the items labelled j."""
    num_classes = proba.shape[1]
    return np.array(
        [proba[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(num_classes)]
    )


def confident_labels(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """The class each item confidently belongs to (-1 when above no class threshold)."""
    above = proba >= per_class_thresholds(labels, proba)[None, :]
    masked = np.where(above, proba, -1.0)
    best = masked.argmax(1)
    return np.where(above.any(1), best, -1)


def label_issues(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Boolean mask of items whose confident label differs from the given one (prune by noise rate).

    For each off-diagonal cell (given i, confident j) of the confident joint holding n items, the n
    items labelled i with the largest margin p_j - p_i are issues. This is cleanlab's default
    `prune_by_noise_rate` filter, written out so the method is visible in one screen.
    """
    confident = confident_labels(labels, proba)
    issues = np.zeros(len(labels), dtype=bool)
    for given in np.unique(labels):
        for other in range(proba.shape[1]):
            if other == given:
                continue
            count = int(((labels == given) & (confident == other)).sum())
            if count == 0:
                continue
            candidates = np.flatnonzero(labels == given)
            margin = proba[candidates, other] - proba[candidates, given]
            issues[candidates[np.argsort(-margin)[:count]]] = True
    return issues


def rank_label_issues(
    paths: list[str], labels: np.ndarray, proba: np.ndarray, classes: list[str]
) -> pd.DataFrame:
    """The review list: every item, most suspicious first, with the class the model suggests."""
    self_confidence = proba[np.arange(len(labels)), labels]
    others = proba.copy()
    others[np.arange(len(labels)), labels] = -1
    suggested = others.argmax(1)
    table = pd.DataFrame(
        {
            "path": paths,
            "given_label": [classes[i] for i in labels],
            "suggested_label": [classes[i] for i in suggested],
            "self_confidence": self_confidence,
            "suggested_probability": proba[np.arange(len(labels)), suggested],
            "confident_learning_issue": label_issues(labels, proba),
        }
    )
    table = table.sort_values("self_confidence", kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table
