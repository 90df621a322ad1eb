"""Issue 26: every run fits the frozen-backbone linear probe beside the fine-tune and ships the one
better on validation; the probe ships as the same network, its regression folded into the head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_checks.images.manifest import load_dataset
from training.images.checkpoint import load_model
from training.images.config import FitConfig, ModelConfig, SplitConfig
from training.images.embeddings import linear_probe
from training.images.evaluate import predict_proba
from training.images.fit import FitResult
from training.images.prepare import assign_split
from training.images.probe import FINE_TUNE, PROBE, Candidate, choose_candidate, fold_probe

SIZE = 64


@pytest.mark.parametrize("classes_in_training", [2, 3])
def test_the_folded_layer_gives_the_probes_probabilities_and_never_a_class_it_did_not_see(
    classes_in_training,
):
    rng = np.random.default_rng(0)
    features = rng.normal(3.0, 2.0, (60, 8))
    labels = np.arange(60) % classes_in_training  # class 3 of 4 never appears in training
    features[:, 0] += labels * 2.0
    probe = linear_probe().fit(features, labels)
    layer = torch.nn.Linear(8, 4).double()
    fold_probe(layer, probe, num_classes=4)
    with torch.no_grad():
        folded = torch.softmax(layer(torch.from_numpy(features)), dim=1).numpy()
    assert np.allclose(folded[:, :classes_in_training], probe.predict_proba(features), atol=1e-6)
    assert folded[:, 3].max() < 1e-9


@pytest.fixture(scope="module")
def split_tiles(tile_subset_master):
    manifest = load_dataset(tile_subset_master).manifest
    manifest = assign_split(
        manifest, SplitConfig(test_fraction=0.25, val_fraction=0.25, frozen_test_dir=None), "tiles"
    )
    return manifest, sorted(manifest["label"].unique())


def _fine_tune(tmp_path, score: float) -> FitResult:
    return FitResult(tmp_path / "best.pt", tmp_path / "last.pt", 1, score)


@pytest.mark.slow
def test_the_probe_is_shipped_when_it_beats_the_fine_tune_on_validation(split_tiles, tmp_path):
    manifest, classes = split_tiles
    model_cfg, fit_cfg = ModelConfig(image_size=SIZE), FitConfig(device="cpu")
    lost = choose_candidate(
        manifest, classes, model_cfg, fit_cfg, _fine_tune(tmp_path, -1.0), tmp_path / "a", tmp_path
    )
    assert lost.name == PROBE and lost.val_macro_f1[FINE_TUNE] == -1.0
    assert Candidate.load(tmp_path / "a" / "candidate.json") == lost
    model, payload = load_model(
        lost.checkpoint
    )  # the same network: evaluate, export and devices take it as is
    assert payload["candidate"] == PROBE and not model.spec.mask_pooling
    val = manifest.index[manifest["split"] == "val"].to_numpy()
    from training.images.data import training_data

    data = training_data(manifest, classes, SIZE, tmp_path)
    predicted = predict_proba(model, data.images[val], torch.device("cpu")).argmax(1)
    from training.images.metrics import macro_f1

    assert macro_f1(data.labels[val], predicted, len(classes)) == pytest.approx(lost.val_macro_f1[PROBE])
    won = choose_candidate(
        manifest, classes, model_cfg, fit_cfg, _fine_tune(tmp_path, 1.0), tmp_path / "b", tmp_path
    )
    assert won.name == FINE_TUNE and won.checkpoint == tmp_path / "best.pt"  # a tie or better: the fine-tune
    assert "linear probe" in won.words() and "fine-tune 1.000" in won.words()
