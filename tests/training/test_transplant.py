"""Defect transplant on real tiles: the defect moves onto another tile, its mask stays true, nothing else changes."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from data_checks.errors import ConfigError
from data_checks.manifest import load_dataset
from training.loader import AugmentedImages
from training.train import training_data
from training.transplant import FEATHER_PX, RING_PX, plan_transplant, transplanted

SIZE = 96


@pytest.fixture(scope="module")
def tiles(tile_subset_master, tmp_path_factory):
    manifest = load_dataset(tile_subset_master).manifest
    classes = tuple(sorted(manifest["label"].unique()))
    return training_data(manifest, list(classes), SIZE, tmp_path_factory.mktemp("pixels"))


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    return cv2.dilate((mask > 0).astype(np.uint8), np.ones((2 * px + 1,) * 2, np.uint8)).astype(bool)


def test_the_defect_moves_with_its_brightness_matched_and_the_rest_is_the_new_tile(tiles):
    free = tiles.classes.index("MT_Free")
    defect = next(k for k in range(len(tiles.labels)) if tiles.labels[k] != free and tiles.masks[k].any())
    background = int(np.flatnonzero(tiles.labels == free)[0])
    image, mask, onto = tiles.images[defect], tiles.masks[defect], tiles.images[background]
    out = transplanted(image, mask, onto)
    inside, near = mask > 0, grow(mask, FEATHER_PX)
    ring = grow(mask, RING_PX) & ~near
    shift = onto[ring].mean() - image[ring].mean()
    expected = np.clip(np.rint(image.astype(np.float64) + shift), 0, 255)
    assert np.abs(out[inside] - expected[inside]).max() <= 1  # the defect, at the new tile's level
    assert np.array_equal(out[~grow(mask, 2 * FEATHER_PX)], onto[~grow(mask, 2 * FEATHER_PX)])
    assert not np.array_equal(out, image)


def test_plan_names_the_setting_when_the_defect_free_class_is_missing(tiles):
    everything = np.arange(len(tiles.labels))
    assert plan_transplant(0.0, "MT_Free", tiles.classes, tiles.labels, everything) is None
    with pytest.raises(ConfigError, match="transplant_onto: 'OK'"):
        plan_transplant(0.5, "OK", tiles.classes, tiles.labels, everything)
    defects_only = everything[tiles.labels != tiles.classes.index("MT_Free")]
    with pytest.raises(ConfigError, match="no 'MT_Free' images"):
        plan_transplant(0.5, "MT_Free", tiles.classes, tiles.labels, defects_only)


def test_the_loader_transplants_only_defects_onto_training_tiles_and_repeats_per_seed(tiles):
    everything = np.arange(len(tiles.labels))
    free = tiles.classes.index("MT_Free")
    plan = plan_transplant(1.0, "MT_Free", tiles.classes, tiles.labels, everything)
    assert set(tiles.labels[plan.background_idx]) == {free}
    unchanged = A.Compose([], seed=0)
    moved = AugmentedImages(tiles, everything, unchanged, plan, seed=3)
    again = AugmentedImages(tiles, everything, unchanged, plan, seed=3)
    for i in everything:
        grey, label, mask, _ = moved[i]
        original = tiles.images[i]
        assert label == tiles.labels[i] and np.array_equal(mask[0].numpy() * 255, tiles.masks[i])
        if label == free or not tiles.masks[i].any():
            assert np.array_equal(grey[0].numpy(), original)
        else:
            outside = ~grow(tiles.masks[i], 2 * FEATHER_PX)
            assert not np.array_equal(grey[0].numpy()[outside], original[outside])
        assert np.array_equal(grey, again[i][0])


def test_the_augmentation_preview_shows_the_transplant_as_a_column(tiles, tmp_path):
    from matplotlib.image import imread

    from training.augment import preview_grid
    from training.config import AugmentConfig

    images = tiles.images[:2]
    plain = preview_grid(images, AugmentConfig(), tmp_path / "plain.png")
    moved = preview_grid(
        images, AugmentConfig(), tmp_path / "moved.png", extra={"defect transplant": 255 - images}
    )
    columns = 1 + 3 * len(AugmentConfig().presets)
    width_plain, width_moved = imread(plain).shape[1], imread(moved).shape[1]
    assert abs(width_moved / width_plain - (columns + 1) / columns) < 0.02


def test_training_with_transplant_on_runs_and_previews_it(tile_subset_master, tmp_path):
    from matplotlib.image import imread

    from training.config import AugmentConfig, FitConfig, ModelConfig, SplitConfig
    from training.prepare import assign_split
    from training.train import train_classifier

    manifest = load_dataset(tile_subset_master).manifest.assign(md5="")
    manifest = assign_split(
        manifest, SplitConfig(test_fraction=0.25, val_fraction=0.25, frozen_test_dir=None), "tiles"
    )
    classes = sorted(manifest["label"].unique())
    fit = FitConfig(epochs=0, warmup_epochs=1, samples_per_epoch=16, batch_size=8)
    augment = AugmentConfig(defect_transplant=0.5)
    out = train_classifier(
        manifest, classes, ModelConfig(image_size=64), augment, fit, tmp_path, tmp_path / "c"
    )
    assert out.fit.best_checkpoint.exists()
    columns = 1 + 1 + 3 * len(augment.presets)  # original, transplant, three draws per preset
    height, width = imread(out.augmentation_preview).shape[:2]
    assert abs(width / height - columns / len(classes)) < 0.05
