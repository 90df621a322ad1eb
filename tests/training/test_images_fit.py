"""A tiny real fine-tune on real tiles: checkpoints, early stopping, and resume after a kill."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_checks.images.manifest import load_dataset
from export.images.onnx import check_parity, export_fp32
from training.images.checkpoint import load_model
from training.images.config import AugmentConfig, EvalConfig, FitConfig, Imbalance, SplitConfig
from training.images.data import training_data
from training.images.device import loader_workers
from training.images.evaluate import evaluate_split
from training.images.fit import fit
from training.images.losses import FocalLoss, classification_loss
from training.images.model import DefectClassifier, make_spec
from training.images.split import grouped_holdout

pytestmark = pytest.mark.slow
SIZE = 64


@pytest.fixture(scope="module")
def tiny(tile_subset_master, tmp_path_factory):
    manifest = load_dataset(tile_subset_master).manifest
    classes = sorted(manifest["label"].unique())
    data = training_data(manifest, classes, SIZE, tmp_path_factory.mktemp("pixels"))
    split = grouped_holdout(
        data.labels, manifest["group"].to_numpy(), SplitConfig(test_fraction=0.25, val_fraction=0.25)
    )
    return data, split, make_spec("efficientnet_lite0", classes, SIZE, 0.2, aux_seg=True)


CFG = FitConfig(epochs=2, warmup_epochs=1, samples_per_epoch=32, batch_size=16, early_stopping_patience=5)


class Killed(Exception):
    pass


def test_fit_writes_best_and_last_and_evaluates(tiny, tmp_path):
    data, split, spec = tiny
    result = fit(CFG, AugmentConfig(), spec, data, split.train, split.val, tmp_path, aux_seg_weight=0.5)
    assert [row["phase"] for row in result.history] == ["warmup", "finetune", "finetune"]
    assert result.best_checkpoint.exists() and result.last_checkpoint.exists()
    model, payload = load_model(result.best_checkpoint)
    assert model.spec == spec and payload["epoch"] == result.best_epoch
    ev = evaluate_split(
        model, data.images, data.labels, split.val, split.test, EvalConfig(), torch.device("cpu"), tmp_path
    )
    assert ev.test_proba.shape == (len(split.test), len(spec.classes))
    assert np.allclose(ev.test_proba.sum(1), 1, atol=1e-5)
    assert ev.plots["confusion_matrix"].exists()


# workers=2: the GPU default draws augmentations in loader workers; each epoch re-seeds them, so a
# resumed run must still repeat the unbroken one (on CPU the default is 0 workers)
@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_a_kill_ends_where_an_unbroken_run_ends(tiny, tmp_path, workers):
    data, split, spec = tiny
    cfg = CFG.model_copy(update={"num_workers": workers})
    unbroken = fit(cfg, AugmentConfig(), spec, data, split.train, split.val, tmp_path / "a")

    def kill_after_second_epoch(row):
        if row["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        fit(
            cfg,
            AugmentConfig(),
            spec,
            data,
            split.train,
            split.val,
            tmp_path / "b",
            on_epoch_end=kill_after_second_epoch,
        )
    resumed = fit(cfg, AugmentConfig(), spec, data, split.train, split.val, tmp_path / "b", resume=True)

    assert len(resumed.history) == 3
    assert resumed.history[-1]["val_macro_f1"] == pytest.approx(
        unbroken.history[-1]["val_macro_f1"], abs=1e-6
    )
    a = load_model(unbroken.last_checkpoint)[0].state_dict()
    b = load_model(resumed.last_checkpoint)[0].state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_model_normalises_inside_and_predicts_masks(tiny):
    _, _, spec = tiny
    model = DefectClassifier(spec).eval()
    grey = torch.full((2, 1, SIZE, SIZE), 127.5)
    assert torch.allclose(
        model.normalise(grey), torch.zeros(2, 3, SIZE, SIZE), atol=1e-6
    )  # (x-0.5)/0.5 at mid-grey
    logits, mask = model.forward_with_mask(grey)
    assert logits.shape == (2, len(spec.classes)) and mask.shape == (2, 1, SIZE // 16, SIZE // 16)
    assert torch.allclose(logits, model(grey), atol=1e-5)  # the mask path computes the same logits


def test_mask_pooling_reads_the_features_where_the_mask_head_points(tiny, tmp_path):
    data, _, spec = tiny
    spec = make_spec("efficientnet_lite0", list(spec.classes), SIZE, 0.2, aux_seg=True, mask_pooling=True)
    model = DefectClassifier(spec).eval()
    grey = torch.from_numpy(data.images[:3, None].astype(np.float32))
    with torch.no_grad():
        logits, mask = model.forward_with_mask(grey)
        assert torch.allclose(logits, model(grey), atol=1e-5)  # what ships is the mask-pooled path
        model.mask_head.bias += 5.0  # a softmax over positions: a constant shift changes nothing
        assert torch.allclose(model(grey), logits, atol=1e-5)
        model.mask_head.weight.mul_(-3.0)  # a different spot: different pooled features
        assert not torch.allclose(model(grey), logits, atol=1e-3)
    # The mask head is part of the exported graph, and ONNX Runtime computes the same probabilities.
    path = export_fp32(model, tmp_path / "pooled.onnx")
    assert check_parity(model, path, grey.numpy()) <= 1e-4


def test_imbalance_options_pick_their_loss():
    labels = np.array([0] * 30 + [1] * 1)
    assert isinstance(classification_loss(FitConfig(imbalance=Imbalance.FOCAL), labels, 2), FocalLoss)
    weighted = classification_loss(FitConfig(imbalance=Imbalance.WEIGHTED_CE), labels, 2)
    assert weighted.weight[1] / weighted.weight[0] == pytest.approx(30)
    focal = FocalLoss(None, gamma=2.0)
    easy, target = torch.tensor([[4.0, -4.0]]), torch.tensor([0])
    assert focal(easy, target) < 0.01 * torch.nn.functional.cross_entropy(easy, target)  # easy examples fade


def test_loader_workers_none_on_cpu_several_on_cuda_and_as_asked_otherwise():
    assert loader_workers(None, torch.device("cpu")) == 0
    assert loader_workers(3, torch.device("cpu")) == 3
    assert loader_workers(0, torch.device("cuda")) == 0
    assert 1 <= loader_workers(None, torch.device("cuda")) <= 8  # this machine has 2 cores or more


def test_a_collapsing_fine_tune_goes_back_to_its_best_weights_at_lower_rates(tiny, tmp_path):
    """A new line's finding: validation 0.79 at epoch 2, then one class for everything from epoch 4 on.
    Rates 1000x too high make the same collapse here."""
    data, split, spec = tiny
    cfg = CFG.model_copy(update={"epochs": 4, "lr_backbone": 0.5, "lr_head": 0.5, "max_restarts": 2})
    result = fit(cfg, AugmentConfig(), spec, data, split.train, split.val, tmp_path)
    restarts = [row for row in result.history if "restart" in row]
    assert 1 <= len(restarts) <= 2, result.history
    assert "one class" in restarts[0]["restart"] or "loss rose" in restarts[0]["restart"]
    after = result.history[result.history.index(restarts[0]) + 1]
    assert after["lr"] < restarts[0]["lr"]  # the rest of the fine-tune runs at the lowered rates
    assert load_model(result.best_checkpoint)[1]["epoch"] == result.best_epoch


def test_a_run_killed_right_after_a_restart_resumes_at_the_lowered_rates(tiny, tmp_path):
    data, split, spec = tiny
    cfg = CFG.model_copy(update={"epochs": 3, "lr_backbone": 0.5, "lr_head": 0.5, "max_restarts": 1})
    unbroken = fit(cfg, AugmentConfig(), spec, data, split.train, split.val, tmp_path / "a")
    [restart] = [row["epoch"] for row in unbroken.history if "restart" in row]

    def kill_at_the_restart(row):
        if row["epoch"] == restart:
            raise Killed

    with pytest.raises(Killed):
        fit(
            cfg,
            AugmentConfig(),
            spec,
            data,
            split.train,
            split.val,
            tmp_path / "b",
            on_epoch_end=kill_at_the_restart,
        )
    resumed = fit(cfg, AugmentConfig(), spec, data, split.train, split.val, tmp_path / "b", resume=True)
    assert [row["lr"] for row in resumed.history] == pytest.approx([row["lr"] for row in unbroken.history])
    assert resumed.history[-1]["train_loss"] == pytest.approx(unbroken.history[-1]["train_loss"], rel=1e-4)


def test_every_step_is_clipped_to_the_configured_gradient_norm_and_the_epoch_reports_its_largest(
    tiny, tmp_path
):
    """Issue 26: a schedule that holds beyond tiles clips gradients; the history shows how hard."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    data, split, spec = tiny
    stepped_norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        stepped_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    handle = register_optimizer_step_pre_hook(record)
    try:
        cfg = CFG.model_copy(update={"epochs": 1, "max_grad_norm": 0.01})
        result = fit(cfg, AugmentConfig(), spec, data, split.train, split.val, tmp_path)
    finally:
        handle.remove()
    assert stepped_norms and max(stepped_norms) <= 0.01 * 1.001
    assert all(row["grad_norm_max"] > 0.01 for row in result.history)  # before clipping: larger
