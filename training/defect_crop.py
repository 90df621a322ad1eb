"""Defect-aware crops: a training image drawn as a zoomed-in window that contains its defect.

Why: at 224 px a crack or a fray is a few pixels wide, and the tiles' own photos are larger
(median 270 x 324, up to 600 px wide). A window cut from the image at twice the model's input
size and resized to it shows the defect with up to twice the detail, while the full view (what
the line camera gives at inference) is still drawn the rest of the time. The window always holds a
pixel of the defect's mask, so the label stays true; images without a mask (defect-free tiles,
defects nobody outlined) get a window at a random place, so a zoomed view is no clue to the class.
Training only: validation and test images are never cropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from data_checks.errors import ConfigError


def defect_window(mask: np.ndarray, rng: np.random.Generator, max_zoom: float) -> tuple[int, int, int]:
    """(top, left, side) of a square window of the (F, F) `mask`'s image: side F / zoom, zoom drawn
    log-uniformly from [1, max_zoom]; the window holds a random defect pixel when the mask has any."""
    full = mask.shape[0]
    side = int(round(full / np.exp(rng.uniform(0.0, np.log(max_zoom)))))
    ys, xs = np.nonzero(mask)
    if len(ys):
        pick = rng.integers(len(ys))
        anchor_y, anchor_x = int(ys[pick]), int(xs[pick])
    else:
        anchor_y, anchor_x = (int(v) for v in rng.integers(0, full, size=2))
    top = int(np.clip(anchor_y - rng.integers(0, side), 0, full - side))
    left = int(np.clip(anchor_x - rng.integers(0, side), 0, full - side))
    return top, left, side


def defect_crop(
    fine_image: np.ndarray, fine_mask: np.ndarray, size: int, rng: np.random.Generator, max_zoom: float
) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask (both (size, size) uint8) cut from the (F, F) fine-resolution copies."""
    top, left, side = defect_window(fine_mask, rng, max_zoom)
    window = (slice(top, top + side), slice(left, left + side))
    image = cv2.resize(np.ascontiguousarray(fine_image[window]), (size, size), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(np.ascontiguousarray(fine_mask[window]), (size, size), interpolation=cv2.INTER_AREA)
    return image, mask


@dataclass(frozen=True)
class CropPlan:
    """What a training loader needs: how often to crop, how far to zoom, and the fine pixels."""

    p: float
    max_zoom: float
    fine_images: np.ndarray  # (N, F, F) uint8, F = round(max_zoom * model input size)
    fine_masks: np.ndarray

    def apply(self, k: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
        """A crop of image k drawn with `seed`, or None when this draw keeps the full view."""
        rng = np.random.default_rng(seed)
        if rng.random() >= self.p:
            return None
        return defect_crop(self.fine_images[k], self.fine_masks[k], size, rng, self.max_zoom)


def plan_crop(
    p: float, max_zoom: float, fine_images: np.ndarray | None, fine_masks: np.ndarray | None
) -> CropPlan | None:
    """None when off; a ConfigError when on and the fine pixels were not loaded."""
    if p <= 0:
        return None
    if fine_images is None or fine_masks is None:
        raise ConfigError(
            "augment.defect_crop needs the training data loaded with fine pixels (training_data(fine_size=...))"
        )
    return CropPlan(p, max_zoom, fine_images, fine_masks)
