"""Loading image folders and CSV manifests; physical-part groups from frame numbers."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from core.errors import DataError
from data_checks.images.manifest import GroupBy, frame_cluster_groups, load_dataset
from tests.fixtures.data import CLASSES, TILES


def test_frame_clusters_join_close_frames_across_classes():
    frames = [100, 130, 5000, 160, None, 5050]
    groups = frame_cluster_groups(frames, ["a", "b", "c", "d", "e", "f"], gap=100)
    assert groups[0] == groups[1] == groups[3]
    assert groups[2] == groups[5] != groups[0]
    assert groups[4] == "e"  # no frame number: its own group


def test_shipped_tiles_load_with_labels_masks_and_tile_groups():
    scan = load_dataset(TILES)
    m = scan.manifest
    assert len(m) == 1344 and not scan.findings
    assert sorted(m["label"].unique()) == CLASSES
    assert m["mask_path"].notna().all()  # every tile has its pixel mask
    sizes = m["group"].value_counts()
    assert 200 <= len(sizes) <= 245 and (sizes == 6).sum() >= 160  # ~240 tiles, most shot 6 times
    assert set(m["lighting"]) == {f"exp{i}" for i in range(7)}


def test_csv_manifest_reports_missing_files_by_row(tmp_path, tile_subset):
    images = sorted(tile_subset.rglob("*.jpg"))[:3]
    rows = [{"path": str(p), "label": p.parts[-3], "group": f"g{i}"} for i, p in enumerate(images)]
    rows.insert(1, {"path": "nowhere/ghost.jpg", "label": "MT_Free", "group": "g9"})
    csv = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    scan = load_dataset(csv)
    assert len(scan.manifest) == 3
    [finding] = scan.findings
    assert finding.rule == "missing_file" and finding.row == 3 and "ghost.jpg" in finding.describe()


def test_csv_manifest_without_label_column_is_a_clear_error(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("path,group\na.jpg,1\n")
    with pytest.raises(DataError, match="lacks column.*label"):
        load_dataset(csv)


def test_group_by_file_warns_that_views_could_leak(tile_subset):
    scan = load_dataset(tile_subset, GroupBy.FILE)
    assert scan.manifest["group"].nunique() == len(scan.manifest)


def test_unreadable_folder_is_named_and_the_rest_loads(tile_subset):
    broken = tile_subset / "MT_Crack" / "Imgs"
    if os.geteuid() == 0:  # root reads any folder: make it unlistable another way
        os.rename(broken, tile_subset.parent / "moved_away")
        broken.symlink_to(tile_subset / "does-not-exist")
    else:
        broken.chmod(0)
    try:
        scan = load_dataset(tile_subset)
    finally:
        if os.geteuid() != 0:
            broken.chmod(0o755)
    problems = [f for f in scan.findings if f.rule in {"unreadable_folder", "unreadable_file"}]
    assert problems and str(Path("MT_Crack") / "Imgs") in problems[0].describe()
    assert "MT_Crack" not in set(scan.manifest["label"]) and len(scan.manifest) == 5 * 18
