"""A real tiny classifier, trained, exported to ONNX (twice, so there are two versions) and registered."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from data_checks.manifest import load_dataset
from registry import publish
from registry.export import ExportConfig, export_edge_models
from registry.onnx_export import read_card, write_metadata
from registry.tracking import TrackingConfig, configure
from training.config import AugmentConfig, EvalConfig, FitConfig, ModelConfig, SplitConfig
from training.evaluate import evaluate_checkpoint
from training.model import DefectClassifier, make_spec
from training.prepare import assign_split
from training.train import train_classifier, training_data

SIZE = 64


@pytest.fixture(scope="module")
def backbone_and_tiles(tile_subset_master, tmp_path_factory):
    """The pretrained backbone with a fresh 6-class head (untrained: the int8 tests need real
    activations, not a good classifier), and the subset's grey images."""
    manifest = load_dataset(tile_subset_master).manifest
    classes = sorted(manifest["label"].unique())
    torch.manual_seed(0)
    model = DefectClassifier(make_spec("efficientnet_lite0", classes, SIZE, 0.2, False)).eval()
    data = training_data(manifest, classes, SIZE, tmp_path_factory.mktemp("cache"))
    return model, data.images[:, None].astype(np.float32)


@pytest.fixture(scope="session")
def exported_pair(tile_subset_master, tmp_path_factory):
    """Two exports of one tiny model that differ in their decision threshold (so in their bytes)."""
    root = tmp_path_factory.mktemp("exported")
    scan = load_dataset(tile_subset_master)
    manifest = scan.manifest.assign(md5="")
    manifest = assign_split(
        manifest, SplitConfig(test_fraction=0.25, val_fraction=0.25, frozen_test_dir=None), "tiles"
    )
    classes = sorted(manifest["label"].unique())
    fit = FitConfig(epochs=0, warmup_epochs=1, samples_per_epoch=32, batch_size=16)
    trained = train_classifier(
        manifest, classes, ModelConfig(image_size=SIZE), AugmentConfig(), fit, root / "train", root / "cache"
    )
    _, model_path = evaluate_checkpoint(
        trained.fit.best_checkpoint, manifest, classes, EvalConfig(), root / "eval", root / "cache"
    )
    reports = []
    for name in ("v1", "v2"):
        report = export_edge_models(
            model_path,
            manifest,
            classes,
            ExportConfig(latency_runs=5, calibration_images=16),
            root / name,
            root / "cache",
            {"test": name},
        )
        if name == "v2":
            card = read_card(report.int8_path)
            card["decision"]["defect_threshold"] = 0.5
            write_metadata(report.int8_path, card)
        reports.append(report)
    return reports, manifest


@pytest.fixture
def registry_store(tmp_path, monkeypatch):
    """An empty MLflow store (SQLite) in a temporary working folder."""
    monkeypatch.chdir(tmp_path)
    cfg = TrackingConfig(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="tests", model_name="tiles"
    )
    return cfg, configure(cfg)


def register_exports(reports, model_name: str = "tiles", manifest=None) -> list[str]:
    """Register each export as a version, as the flow does (metrics, and the frozen set if given)."""
    from registry.release import log_frozen_set

    versions = []
    for report in reports:
        with mlflow.start_run():
            mlflow.log_metrics(report.flat())
            if manifest is not None:
                log_frozen_set(manifest)
            uri = publish.log_onnx_models(report)
            versions.append(publish.register(uri, model_name, {"test": "yes"}).version)
    return versions


def card_of(path: Path) -> dict:
    return json.loads(json.dumps(read_card(path)))
