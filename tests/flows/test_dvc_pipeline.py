"""`dvc repro` on a fresh copy of the project: every stage runs, and the registered model carries
the data hash that dvc.lock records."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.fixtures.data import REPO, copy_tile_subset
from tests.test_layout import LAYERS

pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
    }
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    project = tmp_path_factory.mktemp("dvc") / "project"
    project.mkdir()
    for name in ("dvc.yaml", ".dvcignore", *LAYERS):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, project / name)
    copy_tile_subset(project / "data" / "magnetic_tiles", per_class=14)
    (project / "data" / "frozen_eval").mkdir()
    (project / "data" / "frozen_eval" / "README.md").write_text("frozen sets are written here\n")
    tiny = {
        "checks": {"rules": {"min_per_class": 5}, "quarantine_dir": "quarantine"},
        "split": {"test_fraction": 0.25, "val_fraction": 0.25, "frozen_test_dir": None},
        "model": {"image_size": 64},
        "fit": {"epochs": 1, "warmup_epochs": 1, "samples_per_epoch": 32, "batch_size": 16},
        "export": {"latency_runs": 5, "calibration_images": 16},
        "tracking": {"tracking_uri": f"sqlite:///{project}/mlflow.db"},
    }
    (project / "configs").mkdir()
    (project / "configs" / "defects.yaml").write_text(yaml.safe_dump(tiny))
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
    ):
        assert run(command, project).returncode == 0
    result = run(["dvc", "repro"], project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project


def test_every_stage_ran_and_is_locked(repro):
    lock = yaml.safe_load((repro / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"prepare", "train", "evaluate", "export", "register"}
    assert (repro / "artifacts/dvc/export/model.int8.onnx").exists()
    status = run(["dvc", "status"], repro)
    assert status.returncode == 0 and "up to date" in status.stdout


def test_registered_version_records_the_locked_data_hash(repro):
    lock = yaml.safe_load((repro / "dvc.lock").read_text())
    [data_dep] = [d for d in lock["stages"]["register"]["deps"] if d["path"] == "data/magnetic_tiles"]
    mlflow.set_tracking_uri(f"sqlite:///{repro}/mlflow.db")
    version = mlflow.MlflowClient().get_model_version_by_alias("defect-classifier", "candidate")
    assert version.tags["dvc_data_version"] == data_dep["md5"]
    assert version.tags["flow"] == "dvc-repro"
