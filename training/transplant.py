"""Defect transplant: a training image's masked defect, blended onto a defect-free tile.

Why: the magnetic tiles hold about 240 tiles, and a rare class (MT_Fray) comes from a handful of
them, so a network can learn "this tile" instead of "this defect" and fail on tiles it never saw
(the tile-grouped gap). Moving the defect, at the same place, onto another tile's surface keeps
what defines the class (the masked pixels) and changes what does not (the tile around it). The
defect's brightness is shifted to the new tile's level around it, and its edge is feathered, so
the seam is not a cue. Masks come from the data (Imgs/*.png); images without a mask are never
transplanted. Training only: validation and test images are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from data_checks.errors import ConfigError

FEATHER_PX = 3  # mask grown and blurred by this much, so the seam fades over a few pixels
RING_PX = 8  # the band around the defect whose brightness is matched


def transplanted(defect: np.ndarray, mask: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(S, S) uint8 image: `defect`'s masked pixels over `background`, brightness-matched and feathered.

    `mask` is (S, S) uint8, non-zero on the defect. The defect keeps its position, so the mask
    stays valid for the result.
    """
    inside = (mask > 0).astype(np.uint8)
    kernel = np.ones((2 * FEATHER_PX + 1,) * 2, np.uint8)
    grown = cv2.dilate(inside, kernel)
    ring = cv2.dilate(inside, np.ones((2 * RING_PX + 1,) * 2, np.uint8)).astype(bool) & ~grown.astype(bool)
    shift = float(background[ring].mean() - defect[ring].mean()) if ring.any() else 0.0
    alpha = cv2.GaussianBlur(grown.astype(np.float32), (2 * FEATHER_PX + 1,) * 2, 0)
    alpha = np.maximum(alpha, inside.astype(np.float32))  # the defect itself is copied whole
    blended = alpha * (defect.astype(np.float32) + shift) + (1 - alpha) * background.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def draw_transplant(
    rng: np.random.Generator, label: int, has_mask: bool, mask: np.ndarray, background_class: int, p: float
) -> bool:
    """Whether this draw gets a new background: a defect image with a non-empty mask, with probability p."""
    if p <= 0 or label == background_class or not has_mask or not mask.any():
        return False
    return bool(rng.random() < p)


@dataclass(frozen=True)
class TransplantPlan:
    """What a training loader needs: how often, which class is defect-free, which tiles to paste onto."""

    p: float
    background_class: int
    background_idx: np.ndarray  # training indices of the defect-free class

    def apply(
        self, images: np.ndarray, masks: np.ndarray, k: int, label: int, has_mask: bool, seed: int
    ) -> np.ndarray:
        """Image k, or its defect on a defect-free training tile drawn with `seed`."""
        rng = np.random.default_rng(seed)
        if not draw_transplant(rng, label, has_mask, masks[k], self.background_class, self.p):
            return images[k]
        return transplanted(images[k], masks[k], images[rng.choice(self.background_idx)])


def plan_transplant(
    p: float, onto: str, classes: tuple[str, ...], labels: np.ndarray, train_idx: np.ndarray
) -> TransplantPlan | None:
    """None when off; a ConfigError names the setting when the defect-free class is missing."""
    if p <= 0:
        return None
    if onto not in classes:
        raise ConfigError(
            f"augment.transplant_onto: {onto!r} is not a class of this data ({', '.join(classes)})"
        )
    background_class = classes.index(onto)
    background_idx = train_idx[labels[train_idx] == background_class]
    if len(background_idx) == 0:
        raise ConfigError(
            f"augment.defect_transplant: the training part has no {onto!r} images to paste onto"
        )
    return TransplantPlan(p, background_class, background_idx)
