"""Stage function `review_labels`: rank likely label errors for a person to check.

Out-of-fold probabilities from a linear probe on frozen backbone embeddings feed confident
learning (data_checks.images.mislabels). It lives in training/ because it needs the backbone; the
method itself stays in data_checks/ so it can be tested on any probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data_checks.images.mislabels import rank_label_issues
from data_checks.images.review_report import write_review_html
from training.images.embeddings import cached_embeddings, out_of_fold_proba


@dataclass(frozen=True)
class LabelReview:
    table: pd.DataFrame  # rank, path, given/suggested label, self-confidence, issue flag
    csv: Path
    html: Path

    @property
    def issues(self) -> int:
        return int(self.table["confident_learning_issue"].sum())


def review_labels(
    manifest: pd.DataFrame, classes: list[str], out_dir: Path, cache_dir: Path | None, html_items: int = 60
) -> LabelReview:
    labels = np.array([classes.index(label) for label in manifest["label"]])
    features = cached_embeddings(manifest["path"].tolist(), manifest["md5"].tolist(), cache_dir)
    proba = out_of_fold_proba(features, labels)
    table = rank_label_issues(manifest["path"].tolist(), labels, proba, classes)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / "label_review.csv"
    table.to_csv(csv, index=False)
    html = write_review_html(
        table, out_dir / "label_review.html", html_items, "Likely label errors (confident learning)"
    )
    return LabelReview(table, csv, html)
