"""Defect-aware crops on real tiles: a zoomed window that always holds the defect, drawn repeatably."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from data_checks.errors import ConfigError
from data_checks.manifest import load_dataset
from training.config import AugmentConfig
from training.defect_crop import defect_window, plan_crop
from training.loader import AugmentedImages
from training.train import training_data

SIZE = 64
ZOOM = 2.0


@pytest.fixture(scope="module")
def tiles(tile_subset_master, tmp_path_factory):
    manifest = load_dataset(tile_subset_master).manifest
    classes = sorted(manifest["label"].unique())
    fine = AugmentConfig(defect_crop=0.5, crop_zoom=ZOOM).fine_size(SIZE)
    return training_data(manifest, classes, SIZE, tmp_path_factory.mktemp("pixels"), fine)


def test_fine_pixels_are_the_same_images_at_twice_the_size(tiles):
    assert tiles.fine_images.shape[1:] == (2 * SIZE, 2 * SIZE)
    assert AugmentConfig().fine_size(SIZE) is None  # off by default: nothing extra decoded
    halved = tiles.fine_images.reshape(len(tiles.fine_images), SIZE, 2, SIZE, 2).mean(axis=(2, 4))
    assert np.abs(halved - tiles.images).mean() < 2.0  # grey levels 0..255


def test_every_window_holds_defect_pixels_and_zooms_within_range(tiles):
    with_mask = [k for k in range(len(tiles.labels)) if tiles.fine_masks[k].any()]
    assert len(with_mask) >= 10
    rng = np.random.default_rng(0)
    sides = []
    for k in with_mask:
        for _ in range(20):
            top, left, side = defect_window(tiles.fine_masks[k], rng, ZOOM)
            assert top >= 0 and left >= 0 and top + side <= 2 * SIZE and left + side <= 2 * SIZE
            assert tiles.fine_masks[k][top : top + side, left : left + side].any(), k
            sides.append(side)
    assert min(sides) >= SIZE and max(sides) <= 2 * SIZE
    assert min(sides) < 1.2 * SIZE and max(sides) > 1.8 * SIZE  # the whole range is drawn


def test_the_loader_crops_with_the_set_probability_and_repeats_per_seed(tiles):
    everything = np.arange(len(tiles.labels))
    unchanged = A.Compose([], seed=0)
    plan = plan_crop(0.5, ZOOM, tiles.fine_images, tiles.fine_masks)
    first = AugmentedImages(tiles, everything, unchanged, seed=7, crop=plan)
    again = AugmentedImages(tiles, everything, unchanged, seed=7, crop=plan)
    cropped = 0
    for i in range(len(everything)):
        grey, label, mask, _ = first[i]
        assert grey.shape == (1, SIZE, SIZE) and label == tiles.labels[i]
        assert np.array_equal(grey.numpy(), again[i][0].numpy())  # same seed, same draw
        full_view = np.array_equal(grey[0].numpy(), tiles.images[i])
        cropped += not full_view
        if not full_view and tiles.masks[i].any():
            assert mask.sum() > 0  # a cropped defect image still shows its defect
    assert 0.3 * len(everything) < cropped < 0.7 * len(everything)


def test_plan_is_off_at_zero_and_names_the_setting_without_fine_pixels(tiles):
    assert plan_crop(0.0, ZOOM, None, None) is None
    with pytest.raises(ConfigError, match="defect_crop"):
        plan_crop(0.5, ZOOM, None, None)
