"""Batches for training: cached uint8 pixels, augmented on the fly, drawn per the imbalance setting."""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, WeightedRandomSampler

from inputs.images import channels_first
from training.images.config import FitConfig, Imbalance
from training.images.data import TrainingData
from training.images.device import loader_workers
from training.images.ranks import ALONE, Rank, per_rank_batch, shard


class AugmentedImages(Dataset):
    def __init__(self, data: TrainingData, indices: np.ndarray, transform: A.Compose) -> None:
        self.data, self.indices, self.transform = data, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        k = self.indices[i]
        out = self.transform(image=self.data.images[k], mask=self.data.masks[k])
        pixels = torch.from_numpy(channels_first(out["image"][None]))[0]  # (C, S, S) 0..255
        mask = torch.from_numpy(np.ascontiguousarray(out["mask"])).float()[None] / 255.0
        return pixels, int(self.data.labels[k]), mask, float(self.data.has_mask[k])


def _seed_worker(_: int) -> None:
    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_seed(torch.initial_seed() % 2**31)


def make_loader(
    data: TrainingData,
    indices: np.ndarray,
    transform: A.Compose,
    cfg: FitConfig,
    device: torch.device,
    epoch: int,
    rank: Rank = ALONE,
) -> DataLoader:
    """One epoch's loader, seeded by (seed, epoch) so a resumed run repeats the same draws.

    Every rank draws the same global order and keeps its slice of each global batch; a last global
    batch that is not full is dropped before slicing (a batch of 1 breaks BatchNorm).
    """
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    transform.set_random_seed(cfg.seed * 1000 + epoch + 7919 * rank.rank)
    dataset = AugmentedImages(data, indices, transform)
    count = cfg.samples_per_epoch or len(indices)
    if cfg.imbalance == Imbalance.BALANCED_SAMPLER:
        labels = data.labels[indices]
        per_class = np.bincount(labels, minlength=len(data.classes))
        weights = torch.as_tensor(1.0 / per_class[labels], dtype=torch.double)
        sampler = WeightedRandomSampler(weights, count, replacement=True, generator=generator)
    else:
        sampler = RandomSampler(
            dataset, replacement=count > len(indices), num_samples=count, generator=generator
        )
    order = list(sampler)
    if count > cfg.batch_size:
        order = order[: len(order) // cfg.batch_size * cfg.batch_size]
    workers = loader_workers(cfg.num_workers, device)
    return DataLoader(
        dataset,
        batch_size=per_rank_batch(cfg.batch_size, rank),
        sampler=shard(order, cfg.batch_size, rank),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=_seed_worker if workers else None,
        persistent_workers=False,
    )
