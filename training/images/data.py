"""What a fit, an evaluation and an export read: cached pixels, masks and labels, indexed like the manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from inputs.images import looks_colour
from training.images.pixels import load_pixels

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TrainingData:
    """Everything a fit needs, indexed like the manifest."""

    images: np.ndarray  # (N, S, S) uint8 grey, or (N, S, S, 3) RGB
    masks: np.ndarray  # (N, S, S) uint8
    has_mask: np.ndarray  # (N,) bool: False where no mask file exists (mask loss skipped)
    labels: np.ndarray  # (N,) int class index
    classes: tuple[str, ...]


def colour_of(colour: bool | None, manifest: pd.DataFrame) -> bool:
    """The model's input: `colour` as configured (model.colour), or, when None, whether most of the data
    set's images have colour (a sample, so every stage of one run answers alike)."""
    return looks_colour(manifest["path"].tolist()) if colour is None else colour


def split_indices(manifest: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row indices of each split part, from the manifest's `split` column."""
    return {name: np.flatnonzero(manifest["split"].to_numpy() == name) for name in SPLITS}


def training_data(
    manifest: pd.DataFrame, classes: list[str], image_size: int, cache_dir: Path | None, colour: bool = False
) -> TrainingData:
    """Pixels (decoded once, cached; RGB with `colour`) and integer labels for every manifest row."""
    masks = [m if isinstance(m, str) and m else None for m in manifest["mask_path"]]
    pixels = load_pixels(manifest["path"].tolist(), masks, image_size, cache_dir, colour)
    labels = np.array([classes.index(label) for label in manifest["label"]])
    return TrainingData(
        pixels.images, pixels.masks, np.array([m is not None for m in masks]), labels, tuple(classes)
    )
