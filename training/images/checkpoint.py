"""Self-describing checkpoints: a file alone rebuilds the model, its input spec and its training state.

As in nanoGPT, the checkpoint carries the model's arguments (`ModelSpec`), the resolved config,
the epoch and the optimiser state, so `--resume` and serving need nothing but the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.errors import DataError
from training.images.model import DefectClassifier, ModelSpec


def save_checkpoint(path: Path, model: DefectClassifier, **state: Any) -> Path:
    """Write atomically (temp file + rename): a run killed mid-write keeps the previous file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"spec": model.spec.to_dict(), "model": model.state_dict(), **state}
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as err:
        raise DataError(f"cannot read checkpoint {path}: {err}") from err


def load_model(path: Path) -> tuple[DefectClassifier, dict[str, Any]]:
    """The trained classifier (eval mode, CPU) and the checkpoint's other contents."""
    payload = read_checkpoint(path)
    model = DefectClassifier(ModelSpec.from_dict(payload["spec"]), pretrained=False)
    model.load_state_dict(payload["model"])
    return model.eval(), payload
