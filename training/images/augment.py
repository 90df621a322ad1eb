"""Augmentation presets named for the shop-floor change they simulate.

`lighting`: someone moved a lamp or the sun came through a window. `sensor`: an ageing or cheap
camera (noise, JPEG artefacts, focus and motion blur). `geometry-small`: the part sits a little
off-centre or askew on the belt. There are no 90-degree rotations: these parts have an
orientation (grinding marks run one way) that a real line never turns.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from training.images.config import AugmentConfig, Preset

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # else a 2 s network check at import
import albumentations as A  # noqa: E402  (must follow NO_ALBUMENTATIONS_UPDATE)


def _lighting() -> list[A.BasicTransform]:
    return [
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.8),
        A.RandomGamma(gamma_limit=(80, 125), p=0.4),
        A.CLAHE(clip_limit=(1.0, 3.0), p=0.15),
        # A smooth fall-off, not RandomShadow: its sharp-edged polygons look like cracks and breaks.
        A.Illumination(mode="linear", intensity_range=(0.05, 0.2), p=0.3),
        A.Illumination(mode="gaussian", intensity_range=(0.05, 0.2), p=0.2),
    ]


def _sensor() -> list[A.BasicTransform]:
    return [
        A.GaussNoise(std_range=(0.01, 0.05), p=0.4),
        A.ImageCompression(quality_range=(50, 95), p=0.3),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=0.25),
    ]


def _geometry_small() -> list[A.BasicTransform]:
    return [
        A.Affine(
            rotate=(-5, 5),
            translate_percent=(-0.04, 0.04),
            scale=(0.95, 1.05),
            border_mode=0,
            p=0.7,
        )
    ]


PRESETS = {Preset.LIGHTING: _lighting, Preset.SENSOR: _sensor, Preset.GEOMETRY_SMALL: _geometry_small}


def build_augmentation(cfg: AugmentConfig) -> A.Compose:
    """Compose the configured presets; masks follow every geometric change."""
    transforms: list[A.BasicTransform] = []
    for name in cfg.presets:  # names were checked when the config loaded (training.images.config.Preset)
        transforms += PRESETS[Preset(name)]()
    if cfg.horizontal_flip:
        transforms.append(A.HorizontalFlip(p=0.5))
    if cfg.vertical_flip:
        transforms.append(A.VerticalFlip(p=0.5))
    return A.Compose(transforms, seed=None)


def preview_grid(
    images: np.ndarray, cfg: AugmentConfig, path: Path, per_preset: int = 3, seed: int = 0
) -> Path:
    """PNG grid: each row one image, original first, then `per_preset` draws of every preset."""
    rng = np.random.default_rng(seed)
    columns = [("original", None)]
    for name in cfg.presets:
        pipeline = build_augmentation(
            AugmentConfig(presets=(name,), horizontal_flip=False, vertical_flip=False)
        )
        columns += [(name, pipeline)] * per_preset
    figure = Figure(figsize=(1.6 * len(columns), 1.6 * len(images)))
    axes = figure.subplots(len(images), len(columns), squeeze=False)
    for row, image in enumerate(images):
        for col, (name, pipeline) in enumerate(columns):
            if pipeline is not None:
                pipeline.set_random_seed(int(rng.integers(1 << 31)))
                shown = pipeline(image=image)["image"]
            else:
                shown = image
            axis = axes[row, col]
            axis.imshow(shown, cmap="gray", vmin=0, vmax=255)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return path
