"""What a fit, an evaluation and an export read: cached pixels, masks and labels, indexed like the manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.images.pixels import load_pixels

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TrainingData:
    """Everything a fit needs, indexed like the manifest."""

    images: np.ndarray  # (N, S, S) uint8
    masks: np.ndarray  # (N, S, S) uint8
    has_mask: np.ndarray  # (N,) bool: False where no mask file exists (mask loss skipped)
    labels: np.ndarray  # (N,) int class index
    classes: tuple[str, ...]


def split_indices(manifest: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row indices of each split part, from the manifest's `split` column."""
    return {name: np.flatnonzero(manifest["split"].to_numpy() == name) for name in SPLITS}


def training_data(
    manifest: pd.DataFrame, classes: list[str], image_size: int, cache_dir: Path | None
) -> TrainingData:
    """Pixels (decoded once, cached) and integer labels for every manifest row."""
    masks = [m if isinstance(m, str) and m else None for m in manifest["mask_path"]]
    pixels = load_pixels(manifest["path"].tolist(), masks, image_size, cache_dir)
    labels = np.array([classes.index(label) for label in manifest["label"]])
    return TrainingData(
        pixels.images, pixels.masks, np.array([m is not None for m in masks]), labels, tuple(classes)
    )
