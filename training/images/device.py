"""Device choice and mixed precision, so the same loop runs on a laptop CPU and a data-centre GPU."""

from __future__ import annotations

import contextlib
import os

import torch

from core.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA on a machine without it is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but no CUDA device is available; use 'auto' or 'cpu'")
    return device


def autocast(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed); full fp32 on CPU, where bf16 is slower here."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def loader_workers(requested: int | None, device: torch.device) -> int:
    """DataLoader workers: as asked, else none on CPU and up to 8 on CUDA (one core kept for the loop).

    On a GPU, augmenting a batch on the main thread takes longer than the step itself, so the
    GPU would idle between steps; on a CPU the same cores do both jobs and workers only contend.
    """
    if requested is not None:
        return requested
    if device.type != "cuda":
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))
