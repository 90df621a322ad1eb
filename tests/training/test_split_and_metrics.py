"""Grouped splits never leak a part; the reject threshold keeps the line's rule on validation."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from data_checks.images.manifest import load_dataset
from tests.fixtures.data import TILES
from training.images.config import RejectRule, SplitConfig
from training.images.metrics import classification_metrics, operating_point
from training.images.reject_rule import choose_operating_point, cuts, good_class, reject_table, row_for
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


def _scored_parts(seed: int = 1):
    rng = np.random.default_rng(seed)
    y = np.array([0] * 200 + [1] * 50)  # class 0 = ok
    defect_score = np.concatenate([rng.beta(2, 5, 200), rng.beta(5, 2, 50)])
    return y, np.stack([1 - defect_score, defect_score], 1), defect_score


def test_each_reject_rule_takes_the_cheapest_threshold_that_keeps_its_promise():
    y, proba, score = _scored_parts()
    by_rate = choose_operating_point(y, proba, 0, RejectRule(target_false_reject_rate=0.05))
    assert by_rate.false_reject_rate <= 0.05
    others = [operating_point(y, proba, 0, t) for t in cuts(score)]
    assert all(p.defect_recall <= by_rate.defect_recall for p in others if p.false_reject_rate <= 0.05)

    by_recall = choose_operating_point(y, proba, 0, RejectRule(target_defect_recall=0.96))
    assert by_recall.defect_recall >= 0.96
    assert all(p.false_reject_rate >= by_recall.false_reject_rate for p in others if p.defect_recall >= 0.96)

    by_cost = choose_operating_point(y, proba, 0, RejectRule(missed_defect_cost=20))
    cost = lambda p: 20 * (1 - p.defect_recall) * 50 + p.false_reject_rate * 200  # noqa: E731
    assert all(cost(by_cost) <= cost(operating_point(y, proba, 0, t)) + 1e-9 for t in np.unique(score))
    # a missed defect that costs more moves the threshold down: more defects caught, more parts thrown
    dearer = choose_operating_point(y, proba, 0, RejectRule(missed_defect_cost=200))
    assert dearer.threshold <= by_cost.threshold and dearer.defect_recall >= by_cost.defect_recall


def test_the_threshold_sits_between_two_scores_so_the_same_parts_decide_the_same_in_float32():
    y, proba, score = _scored_parts()
    point = choose_operating_point(y, proba.astype(np.float32), 0, RejectRule(target_false_reject_rate=0.05))
    assert not np.isclose(score.astype(np.float32), point.threshold, atol=1e-7).any()


def test_a_rule_is_exactly_one_of_rate_recall_or_cost():
    with pytest.raises(ValidationError, match="exactly one"):
        RejectRule(target_false_reject_rate=0.05, target_defect_recall=0.9)
    with pytest.raises(ValidationError, match="exactly one"):
        RejectRule()
    assert "5% of good parts" in RejectRule(target_false_reject_rate=0.05).words()


def test_the_held_out_table_runs_from_strict_to_lenient_and_a_manager_can_pick_a_row():
    y, proba, _ = _scored_parts(2)
    table = reject_table(y, proba, 0)
    rows = table["rows"]
    assert (table["defect_parts"], table["good_parts"]) == (50, 200)
    assert [r["threshold"] for r in rows] == sorted((r["threshold"] for r in rows), reverse=True)
    assert rows[0]["false_reject_rate"] == 0 and rows[-1]["defect_recall"] == 1
    recalls = [r["defect_recall"] for r in rows]
    assert recalls == sorted(recalls)
    row = row_for(table, false_reject_rate=0.05)
    assert row["false_reject_rate"] <= 0.05
    assert all(r["defect_recall"] <= row["defect_recall"] for r in rows if r["false_reject_rate"] <= 0.05)
    assert row_for(table, defect_recall=1.0)["defect_recall"] == 1


def test_metrics_on_a_known_confusion():
    y = np.array([0, 0, 1, 1, 2, 2])
    proba = np.eye(3)[[0, 1, 1, 1, 2, 0]]
    m = classification_metrics(y, proba, ("a", "b", "c"))
    assert m.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m.per_class["b"]["recall"] == 1.0 and m.per_class["a"]["recall"] == 0.5
    assert m.balanced_accuracy == pytest.approx((0.5 + 1 + 0.5) / 3)


def test_the_good_class_is_declared_or_found_by_its_name_with_a_warning():
    assert good_class(["MT_Crack", "MT_Free"], "MT_Free") == ("MT_Free", None)
    assert good_class(["defective", "functional"], None)[0] == "functional"
    found, note = good_class(["crack", "OK_parts"], None)
    assert found == "OK_parts" and "--good CLASS" in note
    assert good_class(["scratch", "dent"], None)[0] is None  # classes only, and the note says so
    assert "good, normal all look like one" in good_class(["good", "normal"], None)[1]
    with pytest.raises(ConfigError, match="'pass' is not a class of this data"):
        good_class(["crack", "ok"], "pass")
