"""On the real tiles with 5% of labels flipped, the review list puts most flipped items on top."""

from __future__ import annotations

import numpy as np
import pytest

from data_checks.images.manifest import load_dataset
from data_checks.images.mislabels import rank_label_issues
from data_checks.images.properties import compute_image_properties
from tests.fixtures.data import TILES
from training.images.embeddings import cached_embeddings, out_of_fold_proba

pytestmark = pytest.mark.slow


def test_flipped_labels_rank_in_the_top_tenth(tmp_path):
    manifest = load_dataset(TILES).manifest
    classes = sorted(manifest["label"].unique())
    truth = np.array([classes.index(c) for c in manifest["label"]])
    md5 = compute_image_properties(manifest["path"].tolist(), tmp_path)["md5"].tolist()
    features = cached_embeddings(manifest["path"].tolist(), md5, tmp_path)

    rng = np.random.default_rng(7)
    flipped = rng.choice(len(truth), size=round(0.05 * len(truth)), replace=False)
    noisy = truth.copy()
    noisy[flipped] = [rng.choice([c for c in range(len(classes)) if c != truth[i]]) for i in flipped]

    ranked = rank_label_issues(manifest["path"].tolist(), noisy, out_of_fold_proba(features, noisy), classes)
    top = set(ranked["path"][: len(truth) // 10])
    hits = len(top & set(manifest["path"].to_numpy()[flipped]))
    recall, precision = hits / len(flipped), hits / len(top)
    print(f"flipped {len(flipped)}: recall in top 10% {recall:.2f}, precision {precision:.2f}")
    assert recall >= 0.60
    flagged = set(ranked["path"][ranked["confident_learning_issue"]])
    assert len(flagged & set(manifest["path"].to_numpy()[flipped])) / len(flipped) >= 0.5
