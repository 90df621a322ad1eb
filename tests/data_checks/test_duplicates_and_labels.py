"""Duplicate groups from pixels, confident learning and annotator agreement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from data_checks.images.annotators import annotator_agreement, fleiss_kappa
from data_checks.images.config import ChecksConfig
from data_checks.images.duplicates import DuplicateConfig, find_duplicates, merge_groups
from data_checks.images.gate import check_image_dataset
from data_checks.images.manifest import load_dataset
from data_checks.images.mislabels import label_issues, rank_label_issues
from data_checks.images.properties import compute_image_properties
from tests.fixtures.data import BALL_SCREW, TILES


@pytest.fixture(scope="module")
def shipped_tiles(tmp_path_factory):
    manifest = load_dataset(TILES).manifest
    properties = compute_image_properties(manifest["path"].tolist(), tmp_path_factory.mktemp("cache"))
    return manifest, properties.assign(label=manifest["label"].to_numpy())


def test_pixel_groups_recover_the_tile_groups(shipped_tiles):
    """From pixels alone (no file names), the part groups agree with the frame-number groups."""
    manifest, table = shipped_tiles
    report = find_duplicates(table, DuplicateConfig())
    ari = adjusted_rand_score(manifest["group"], report.part_group)
    assert ari > 0.7, ari  # measured 0.74 (RESULTS.md); a random grouping scores ~0
    assert report.thresholds["view_distance"] == 0.02 and report.thresholds["copy_distance"] == 0.002


def test_a_line_whose_images_all_look_alike_is_not_read_as_copies_of_one_part(tmp_path):
    """Issue 26's second line: ball-screw spindle photos look the same at thumbnail size (grooves
    everywhere), and the tiles' fixed thresholds made 53 of 505 images label conflicts and every image
    one part. Thresholds unset now scale with the data set's own distances."""
    manifest = load_dataset(BALL_SCREW / "ball_screw.csv").manifest
    table = compute_image_properties(manifest["path"].tolist(), tmp_path).assign(
        label=manifest["label"].to_numpy()
    )
    report = find_duplicates(table, DuplicateConfig())
    assert [f for f in report.findings if f.rule == "duplicate_label_conflict"] == []
    assert report.thresholds["median_distance"] < 0.05 and report.thresholds["view_distance"] < 0.002
    # the CSV names the parts (camera positions); merged by look, 14 became 7 and the split failed
    checked = check_image_dataset(ChecksConfig(cache_dir=tmp_path, quarantine_dir=tmp_path / "q"),
                                  BALL_SCREW / "ball_screw.csv", tmp_path / "checks")  # fmt: skip
    assert checked.manifest["group"].nunique() == 14 and checked.quarantined == []
    assert "groups_look_alike" in {f.rule for f in checked.findings}
    fixed = find_duplicates(
        table, DuplicateConfig(view_distance=0.02, copy_distance=0.002)
    )  # as set: as given
    assert len([f for f in fixed.findings if f.rule == "duplicate_label_conflict"]) > 25


def test_shipped_tiles_hold_one_photo_filed_under_two_labels(shipped_tiles):
    """A real finding: MT_Fray/exp0_num_797 and MT_Free/exp1_num_824 are the same shot."""
    _, table = shipped_tiles
    report = find_duplicates(table, DuplicateConfig())
    conflicts = sorted(
        f.path.split("magnetic_tiles/")[1] for f in report.findings if f.rule == "duplicate_label_conflict"
    )
    assert conflicts == ["MT_Fray/Imgs/exp0_num_797.jpg", "MT_Free/Imgs/exp1_num_824.jpg"]


def test_merge_groups_is_a_union():
    merged = merge_groups(np.array(["a", "a", "b", "c"]), np.array([1, 2, 2, 3]))
    assert merged[0] == merged[1] == merged[2] != merged[3]


def test_confident_learning_flags_confidently_wrong_labels():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 300)
    proba = np.full((300, 3), 0.05)
    proba[np.arange(300), truth] = 0.9
    given = truth.copy()
    flipped = rng.choice(300, 15, replace=False)
    given[flipped] = (truth[flipped] + 1) % 3
    issues = label_issues(given, proba)
    assert set(np.flatnonzero(issues)) == set(flipped)
    ranked = rank_label_issues([str(i) for i in range(300)], given, proba, ["a", "b", "c"])
    assert set(ranked["path"][:15].astype(int)) == set(flipped)
    assert (
        ranked["suggested_label"][:15].to_numpy()
        == np.array(["a", "b", "c"])[truth[ranked["path"][:15].astype(int)]]
    ).all()


def test_fleiss_kappa_matches_the_published_example():
    """Fleiss (1971) worked example as reproduced on Wikipedia: 10 items, 14 raters, kappa 0.210."""
    counts = np.array(
        [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
         [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    )  # fmt: skip
    overall, _ = fleiss_kappa(counts)
    assert overall == pytest.approx(0.210, abs=0.001)


def test_annotators_disagreeing_items_are_listed_and_ties_are_errors():
    rows = pd.DataFrame(
        {
            "path": ["a", "a", "a", "b", "b", "b", "c", "c", "c"],
            "annotator": ["day", "night", "weekend"] * 3,
            "label": ["ok", "ok", "crack", "ok", "ok", "ok", "ok", "crack", "chip"],
        }
    )
    report, collapsed = annotator_agreement(rows)
    assert set(report.disagreements["path"]) == {"a", "c"}
    rules = {f.path: f.rule for f in report.findings}
    assert rules == {"a": "annotator_disagreement", "c": "annotator_tie"}
    assert dict(zip(collapsed["path"], collapsed["label"], strict=True))["a"] == "ok"
    assert len(report.pairwise) == 3 and report.pairwise["cohen_kappa"].between(-1, 1).all()
