"""Fine-tuning on two processes with torchrun (gloo on this CPU): the same steps as one process with
the same global batch, rank 0 alone writing, and a killed run resuming where it stopped."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from core.errors import ConfigError, TrainingError
from data_checks.images.manifest import load_dataset
from training.images.checkpoint import load_model, read_checkpoint
from training.images.config import AugmentConfig, FitConfig, ModelConfig, SplitConfig
from training.images.ranks import Rank, shard
from training.images.split import grouped_holdout
from training.images.torchrun import train_on_processes
from training.images.train import train_classifier

pytestmark = pytest.mark.slow

# No dropout, augmentation or mask loss: their random draws differ per rank by design, and without
# them two processes must take the one-process steps up to floating-point summation order.
MODEL = ModelConfig(image_size=64, dropout=0.0, aux_seg_weight=0.0, mask_pooling=False)
AUGMENT = AugmentConfig(presets=(), horizontal_flip=False)
FIT = FitConfig(
    epochs=1, warmup_epochs=1, samples_per_epoch=64, batch_size=16, early_stopping_patience=5, seed=1
)


@pytest.fixture(scope="module")
def split_tiles(tile_subset_master):
    manifest = load_dataset(tile_subset_master).manifest
    classes = sorted(manifest["label"].unique())
    labels = np.array([classes.index(label) for label in manifest["label"]])
    parts = grouped_holdout(
        labels, manifest["group"].to_numpy(), SplitConfig(test_fraction=0.25, val_fraction=0.25)
    )
    split = np.full(len(manifest), "train", dtype=object)
    split[parts.val], split[parts.test] = "val", "test"
    return manifest.assign(split=split), classes


def test_each_rank_takes_its_slice_of_every_global_batch():
    order = list(range(10))
    ranks = [shard(order, 4, Rank(r, 2)) for r in range(2)]
    assert ranks == [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7]]
    assert sorted(ranks[0] + ranks[1]) == order


def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_anything_starts(
    split_tiles, tmp_path
):
    manifest, classes = split_tiles
    with pytest.raises(ConfigError, match="batch_size=15 does not split over 2"):
        train_on_processes(manifest, classes, MODEL, AUGMENT, FIT.model_copy(update={"batch_size": 15, "processes": 2}), tmp_path)  # fmt: skip


def test_two_processes_step_like_one_and_a_killed_run_resumes(split_tiles, tmp_path):
    manifest, classes = split_tiles
    cache = tmp_path / "cache"
    already_running = set(psutil.Process().children(recursive=True))  # e.g. Prefect's ephemeral server
    one = train_classifier(manifest, classes, MODEL, AUGMENT, FIT, tmp_path / "one", cache)
    two = FIT.model_copy(update={"processes": 2})
    killer = threading.Thread(
        target=kill_torchrun_after_epoch, args=(tmp_path / "two" / "checkpoints" / "last.pt",)
    )
    killer.start()
    with pytest.raises(TrainingError, match="training on 2 processes failed"):
        train_on_processes(manifest, classes, MODEL, AUGMENT, two, tmp_path / "two", cache)
    killer.join()
    assert read_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")["epoch"] == 1

    resumed = train_on_processes(manifest, classes, MODEL, AUGMENT, two, tmp_path / "two", cache, resume=True)

    assert [row["epoch"] for row in resumed.fit.history] == [1, 2]
    for a, b in zip(one.fit.history, resumed.fit.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_macro_f1"] == pytest.approx(a["val_macro_f1"], abs=1e-9)
    alone = load_model(one.fit.last_checkpoint)[0].state_dict()
    shared = load_model(resumed.fit.last_checkpoint)[0].state_dict()
    # Adam scales each step to about the learning rate, so summation-order noise in a gradient near
    # zero can move a weight by up to ~lr per step; measured 3e-4 after 8 steps
    assert max(float((alone[k].float() - shared[k].float()).abs().max()) for k in alone) < 5e-3
    assert resumed.augmentation_preview.exists()
    left = set(psutil.Process().children(recursive=True)) - already_running
    assert not [p for p in left if p.is_running()]


def kill_torchrun_after_epoch(last: Path, timeout_s: float = 300) -> None:
    """SIGKILL torchrun and its ranks once rank 0 has saved epoch 1, as a machine losing power would.

    Only torchrun's tree: earlier tests in the same pytest process leave Prefect's ephemeral API
    server and multiprocessing's resource tracker as children, and killing those broke the suite."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if last.exists() and read_checkpoint(last)["epoch"] >= 1:
            break
        time.sleep(0.1)
    for child in psutil.Process().children():
        if "torch.distributed.run" not in child.cmdline():
            continue
        for process in [*child.children(recursive=True), child]:
            process.kill()
