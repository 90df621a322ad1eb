"""What one training process does with its peers when a fit runs on several (torchrun, DDP).

A single-process fit sees `Rank(0, 1)` and every helper here is a no-op, so `fit` has one code path.
Under torchrun each rank draws its own share of every global batch (the same global batch as one
process: `fit.batch_size` is split across ranks), DistributedDataParallel averages the gradients,
validation is split across ranks and gathered, and only rank 0 writes checkpoints and reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from core.errors import ConfigError


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    local: int = 0  # index on this machine: which GPU the rank drives

    @property
    def main(self) -> bool:
        """Rank 0: the one that saves checkpoints, prints and logs."""
        return self.rank == 0


ALONE = Rank()  # a fit on one process


def current() -> Rank:
    if dist.is_available() and dist.is_initialized():
        return Rank(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return ALONE


def rank_device(device: torch.device, rank: Rank) -> torch.device:
    """One GPU per rank (its local index); CPU ranks share the CPU."""
    if device.type != "cuda" or rank.world == 1:
        return device
    torch.cuda.set_device(rank.local)
    return torch.device("cuda", rank.local)


def per_rank_batch(batch_size: int, rank: Rank) -> int:
    """Each rank's share of the global batch; the global batch stays what one process would use."""
    if batch_size % rank.world:
        raise ConfigError(
            f"fit.batch_size={batch_size} does not split over {rank.world} processes: "
            f"use a multiple of {rank.world} (the global batch stays the same as on one process)"
        )
    return batch_size // rank.world


def shard(order: list[int], batch_size: int, rank: Rank) -> list[int]:
    """This rank's part of one epoch's draw: from each global batch of `order`, its slice.

    Every rank draws the same `order` (same seed), so the ranks' slices of batch k together are
    exactly the one-process batch k.
    """
    if rank.world == 1:
        return order
    part = batch_size // rank.world
    mine = []
    for start in range(0, len(order), batch_size):
        mine.extend(order[start + rank.rank * part : start + (rank.rank + 1) * part])
    return mine


class _WithMask(nn.Module):
    """DDP synchronises gradients of what its `forward` computes; the loop needs the mask logits too."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, grey: torch.Tensor):
        return self.model.forward_with_mask(grey)


def trainable(model: nn.Module, rank: Rank, device: torch.device) -> nn.Module:
    """What the loop calls `forward_with_mask` through. Under DDP it is rebuilt at each phase: DDP
    registers only the parameters that require gradients when it is built (the backbone is frozen
    during warm-up and trainable afterwards)."""
    if rank.world == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    wrapped = nn.parallel.DistributedDataParallel(_WithMask(model), device_ids=ids)
    wrapped.forward_with_mask = wrapped.forward
    return wrapped


def all_sum(values: list[float], rank: Rank) -> list[float]:
    """Sum per-rank counts (images seen, summed loss) over all ranks."""
    if rank.world == 1:
        return values
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return total.tolist()


def gather(part: np.ndarray, rank: Rank) -> np.ndarray:
    """Concatenate every rank's array in rank order (validation predictions of each rank's share)."""
    if rank.world == 1:
        return part
    parts: list = [None] * rank.world
    dist.all_gather_object(parts, part)
    return np.concatenate(parts)


def barrier(rank: Rank) -> None:
    if rank.world > 1:
        dist.barrier()
