"""Issue 26: product lines in one store never gate against or replace each other. A registered model
serves the line of its first registration; another line's training under that name is refused in
the first seconds, with the setting that fixes it, and the first line's champion stays."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest

from core.errors import ConfigError
from flows.images.config import DefectJobConfig
from flows.images.preflight import preflight
from registry.config import TrackingConfig
from tests.fixtures.data import TILES


def _line(folder, n: int = 3):
    for name in ("MT_Free", "MT_Crack"):
        (folder / name).mkdir(parents=True)
        for image in sorted((TILES / name / "Imgs").glob("*.jpg"))[:n]:
            (folder / name / image.name).symlink_to(image)
    return folder


def _store_with_a_tile_line(tmp_path) -> str:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    client.create_registered_model("defect-classifier", tags={"product_line": "magnetic_tiles"})
    return uri


def test_a_second_line_under_the_first_lines_chosen_model_is_refused_before_anything_runs(tmp_path):
    uri = _store_with_a_tile_line(tmp_path)
    solar = _line(tmp_path / "solar_cells")
    out = subprocess.run([sys.executable, "-m", "flows.cli.main", "train", "defects", "--data", str(solar),
                          "--set", f"tracking.tracking_uri={uri}", "--set", "tracking.model_name=defect-classifier"],
                         capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env=os.environ | {"COLUMNS": "400"})  # fmt: skip
    said = out.stderr + out.stdout
    assert out.returncode == 2, said
    assert "'defect-classifier' serves product line 'magnetic_tiles'" in said and "line 'solar_cells'" in said
    assert "--set tracking.model_name=solar_cells-defects" in said and "Traceback" not in said
    assert "Data checks" not in said  # refused before any check ran
    client = mlflow.MlflowClient(uri)
    assert client.search_model_versions("name = 'defect-classifier'") == []
    assert mlflow.search_runs(experiment_names=["defect-classifier"], output_format="list") == []


def test_the_line_is_the_folder_name_unless_declared_and_its_own_model_name_is_free(tmp_path):
    uri = _store_with_a_tile_line(tmp_path)
    cfg = DefectJobConfig(tracking=TrackingConfig(tracking_uri=uri))
    tiles = _line(tmp_path / "magnetic_tiles")
    assert preflight(cfg, tiles, "check").tracking.line == "magnetic_tiles"
    (tmp_path / "magnetic_tiles_link").symlink_to(tiles)  # a link keeps its own name
    assert preflight(cfg, tmp_path / "magnetic_tiles_link", None).tracking.line == "magnetic_tiles_link"
    renamed = _line(tmp_path / "tiles_copy")  # the same line in another folder: declared
    declared = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"line": "magnetic_tiles"})})
    assert preflight(declared, renamed, "check").tracking.line == "magnetic_tiles"
    own = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"model_name": "solar-defects"})})
    assert preflight(own, _line(tmp_path / "solar"), "claim").tracking.line == "solar"
    client = mlflow.MlflowClient(uri)  # claimed before its run started: a second line now meets its owner
    assert client.get_registered_model("solar-defects").tags == {"product_line": "solar"}
    with pytest.raises(ConfigError, match="'solar-defects' serves product line 'solar'"):
        preflight(own, _line(tmp_path / "wafers"), "claim")
    bad = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"line": "../etc"})})
    with pytest.raises(ConfigError, match="product line '../etc'"):
        preflight(bad, tiles, None)


def test_a_model_from_before_lines_is_claimed_by_the_next_line_that_trains_it(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.MlflowClient(uri).create_registered_model("defect-classifier")  # no tag: an older store
    cfg = DefectJobConfig(tracking=TrackingConfig(tracking_uri=uri))
    preflight(cfg, _line(tmp_path / "magnetic_tiles"), "claim")
    assert (
        mlflow.MlflowClient(uri).get_registered_model("defect-classifier").tags["product_line"]
        == "magnetic_tiles"
    )


def test_a_new_line_with_the_default_name_trains_its_own_model_and_leaves_the_first_alone(tmp_path):
    uri = _store_with_a_tile_line(tmp_path)
    cfg = DefectJobConfig(tracking=TrackingConfig(tracking_uri=uri))
    settled = preflight(cfg, _line(tmp_path / "solar"), "claim")
    assert (settled.tracking.line, settled.tracking.model_name) == ("solar", "solar-defects")
    client = mlflow.MlflowClient(uri)
    assert client.get_registered_model("solar-defects").tags == {"product_line": "solar"}
    assert client.get_registered_model("defect-classifier").tags == {"product_line": "magnetic_tiles"}
    assert (
        preflight(cfg, _line(tmp_path / "magnetic_tiles"), "check").tracking.model_name == "defect-classifier"
    )
