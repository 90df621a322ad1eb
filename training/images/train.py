"""Stage function `train_classifier`: manifest with a split column in, best checkpoint out.

The Prefect task, the DVC `train` stage and `shopfloor train defects` all call this one function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.images.augment import preview_grid
from training.images.config import AugmentConfig, FitConfig, ModelConfig
from training.images.data import colour_of, split_indices, training_data
from training.images.fit import FitResult, fit
from training.images.model import make_spec
from training.images.ranks import current


@dataclass(frozen=True)
class TrainOutput:
    fit: FitResult
    augmentation_preview: Path


def preview_examples(labels: np.ndarray, train_idx: np.ndarray, num_classes: int) -> np.ndarray:
    """One training image per class (manifest indices), to show what each preset does to real parts."""
    train_labels = labels[train_idx]
    return np.array(
        [
            train_idx[np.flatnonzero(train_labels == c)[0]]
            for c in range(num_classes)
            if (train_labels == c).any()
        ]
    )


def train_classifier(
    manifest: pd.DataFrame,
    classes: list[str],
    model_cfg: ModelConfig,
    augment_cfg: AugmentConfig,
    fit_cfg: FitConfig,
    out_dir: Path,
    cache_dir: Path | None = None,
    resume: bool = False,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> TrainOutput:
    colour = colour_of(model_cfg.colour, manifest)
    data = training_data(manifest, classes, model_cfg.image_size, cache_dir, colour)
    parts = split_indices(manifest)
    spec = make_spec(
        str(model_cfg.backbone), classes, model_cfg.image_size, model_cfg.dropout,
        model_cfg.aux_seg_weight > 0, model_cfg.mask_pooling, colour,
    )  # fmt: skip
    preview = out_dir / "augmentation_preview.png"
    if current().main:  # one picture, not one per training process
        shown = preview_examples(data.labels, parts["train"], len(classes))
        preview_grid(data.images[shown], augment_cfg, preview)
    result = fit(
        fit_cfg, augment_cfg, spec, data, parts["train"], parts["val"], out_dir / "checkpoints",
        resume=resume, aux_seg_weight=model_cfg.aux_seg_weight, on_epoch_end=on_epoch_end,
    )  # fmt: skip
    return TrainOutput(result, preview)
