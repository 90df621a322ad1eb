"""Stage function `train_classifier`: manifest with a split column in, best checkpoint out.

The Prefect task, the DVC `train` stage and `shopfloor train defects` all call this one function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from training.augment import preview_grid
from training.config import AugmentConfig, FitConfig, ModelConfig
from training.defect_crop import plan_crop
from training.fit import FitResult, fit
from training.loader import TrainingData
from training.model import make_spec
from training.pixels import load_pixels
from training.transplant import plan_transplant

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TrainOutput:
    fit: FitResult
    augmentation_preview: Path


def split_indices(manifest: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row indices of each split part, from the manifest's `split` column."""
    return {name: np.flatnonzero(manifest["split"].to_numpy() == name) for name in SPLITS}


def training_data(
    manifest: pd.DataFrame,
    classes: list[str],
    image_size: int,
    cache_dir: Path | None,
    fine_size: int | None = None,
) -> TrainingData:
    """Pixels (decoded once, cached) and integer labels for every manifest row; with `fine_size`,
    also a finer copy for defect-aware crops (AugmentConfig.fine_size)."""
    masks = [m if isinstance(m, str) and m else None for m in manifest["mask_path"]]
    pixels = load_pixels(manifest["path"].tolist(), masks, image_size, cache_dir)
    fine = load_pixels(manifest["path"].tolist(), masks, fine_size, cache_dir) if fine_size else None
    labels = np.array([classes.index(label) for label in manifest["label"]])
    return TrainingData(
        pixels.images, pixels.masks, np.array([m is not None for m in masks]), labels, tuple(classes),
        fine.images if fine else None, fine.masks if fine else None,
    )  # fmt: skip


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
    data = training_data(
        manifest, classes, model_cfg.image_size, cache_dir, augment_cfg.fine_size(model_cfg.image_size)
    )
    parts = split_indices(manifest)
    spec = make_spec(
        model_cfg.backbone,
        classes,
        model_cfg.image_size,
        model_cfg.dropout,
        model_cfg.aux_seg_weight > 0,
        model_cfg.mask_pooling,
    )
    # One image per class, to show what each preset does to real parts.
    examples = [
        int(np.flatnonzero(data.labels[parts["train"]] == c)[0])
        for c in range(len(classes))
        if (data.labels[parts["train"]] == c).any()
    ]
    shown = parts["train"][examples]
    plan = plan_transplant(
        augment_cfg.defect_transplant,
        augment_cfg.transplant_onto,
        tuple(classes),
        data.labels,
        parts["train"],
    )
    extra = {}
    if plan is not None:  # a column of each example's defect on another tile, transplanted every time
        always = replace(plan, p=1.0)
        extra["defect transplant"] = np.stack(
            [
                always.apply(data.images, data.masks, k, data.labels[k], data.has_mask[k], seed=k)
                for k in shown
            ]
        )
    crop = plan_crop(augment_cfg.defect_crop, augment_cfg.crop_zoom, data.fine_images, data.fine_masks)
    if crop is not None:  # a column of each example cropped around its defect, every time
        always_crop = replace(crop, p=1.0)
        extra["defect crop"] = np.stack(
            [always_crop.apply(k, model_cfg.image_size, seed=k)[0] for k in shown]
        )
    preview = preview_grid(data.images[shown], augment_cfg, out_dir / "augmentation_preview.png", extra=extra)
    result = fit(
        fit_cfg,
        augment_cfg,
        spec,
        data,
        parts["train"],
        parts["val"],
        out_dir / "checkpoints",
        resume=resume,
        aux_seg_weight=model_cfg.aux_seg_weight,
        on_epoch_end=on_epoch_end,
    )
    return TrainOutput(result, preview)
