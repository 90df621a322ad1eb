"""Grouped splits never leak a part; the reject threshold meets its recall target on validation."""

from __future__ import annotations

import numpy as np
import pytest

from data_checks.images.manifest import load_dataset
from tests.fixtures.data import TILES
from training.images.config import SplitConfig
from training.images.metrics import choose_defect_threshold, classification_metrics, operating_point
from training.images.split import grouped_holdout, grouped_kfold, lighting_shift


@pytest.fixture(scope="module")
def tiles():
    return load_dataset(TILES).manifest


def test_holdout_keeps_every_tile_on_one_side(tiles):
    split = grouped_holdout(tiles["label"].to_numpy(), tiles["group"].to_numpy(), SplitConfig())
    groups = tiles["group"].to_numpy()
    parts = [set(groups[split.train]), set(groups[split.val]), set(groups[split.test])]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(split.train) + len(split.val) + len(split.test) == len(tiles)
    assert set(tiles["label"].to_numpy()[split.test]) == set(tiles["label"])  # stratified: every class tested


def test_kfold_covers_every_image_once(tiles):
    folds = grouped_kfold(tiles["label"].to_numpy(), tiles["group"].to_numpy(), 5, 0.15, seed=0)
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested) == list(range(len(tiles)))


def test_lighting_shift_tests_new_tiles_under_new_lamps(tiles):
    split = lighting_shift(
        tiles["label"].to_numpy(),
        tiles["group"].to_numpy(),
        tiles["lighting"].to_numpy(),
        {"exp1", "exp2", "exp3"},
        {"exp4", "exp5", "exp6"},
        SplitConfig(),
    )
    lighting, groups = tiles["lighting"].to_numpy(), tiles["group"].to_numpy()
    assert set(lighting[split.train]) <= {"exp1", "exp2", "exp3"}
    assert set(lighting[split.test]) <= {"exp4", "exp5", "exp6"}
    assert not set(groups[split.train]) & set(groups[split.test])


def test_threshold_reaches_target_recall_and_reports_its_cost():
    rng = np.random.default_rng(1)
    y = np.array([0] * 200 + [1] * 50)  # class 0 = ok
    defect_score = np.concatenate([rng.beta(2, 5, 200), rng.beta(5, 2, 50)])
    proba = np.stack([1 - defect_score, defect_score], 1)
    point = choose_defect_threshold(y, proba, ok_index=0, target_recall=0.96)
    assert point.defect_recall >= 0.96
    # the next higher threshold would miss the target: the choice is the cheapest that reaches it
    scores = np.sort(defect_score[y == 1])
    higher = scores[scores > point.threshold]
    if len(higher):
        assert operating_point(y, proba, 0, higher[0]).defect_recall < 0.96
    assert 0 < point.false_reject_rate < 1


def test_metrics_on_a_known_confusion():
    y = np.array([0, 0, 1, 1, 2, 2])
    proba = np.eye(3)[[0, 1, 1, 1, 2, 0]]
    m = classification_metrics(y, proba, ("a", "b", "c"))
    assert m.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m.per_class["b"]["recall"] == 1.0 and m.per_class["a"]["recall"] == 0.5
    assert m.balanced_accuracy == pytest.approx((0.5 + 1 + 0.5) / 3)
