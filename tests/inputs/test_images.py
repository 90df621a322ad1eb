"""Colour where the product has colour: which data sets keep three channels, and how files become input."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from inputs.images import (
    card_colour,
    channels_first,
    load_batch,
    looks_colour,
    luminance,
    read_grey,
    read_image,
)
from tests.fixtures.data import BALL_SCREW, TILES


def ball_screw_paths(n: int = 40) -> list[str]:
    manifest = pd.read_csv(BALL_SCREW / "ball_screw.csv")
    return [str(BALL_SCREW / p) for p in manifest["path"][:n]]


def test_the_colour_line_is_found_colour_and_the_grey_tiles_stay_grey(tmp_path):
    assert looks_colour(ball_screw_paths())
    tiles = sorted(str(p) for p in (TILES / "MT_Crack" / "Imgs").glob("*.jpg"))[:20]
    assert not looks_colour(tiles)
    # a grey camera whose files were saved as RGB is still grey
    saved = []
    for i, path in enumerate(tiles[:5]):
        Image.fromarray(read_grey(path)).convert("RGB").save(tmp_path / f"{i}.jpg")
        saved.append(str(tmp_path / f"{i}.jpg"))
    assert not looks_colour(saved)


def test_colour_files_become_three_channels_first_and_grey_ones_one():
    path = ball_screw_paths(1)[0]
    rgb, grey = read_image(path, colour=True), read_image(path, colour=False)
    assert rgb.shape == (*grey.shape, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb[..., 0].astype(int) - rgb[..., 2]).mean() > 3  # the channels differ: colour kept
    assert load_batch([path], 32, colour=True).shape == (1, 3, 32, 32)
    assert load_batch([path], 32).shape == (1, 1, 32, 32)
    assert channels_first(np.zeros((2, 8, 8, 3), np.uint8)).shape == (2, 3, 8, 8)
    assert np.abs(luminance(rgb).astype(int) - grey).mean() < 2  # the statistics' grey is the file's grey


def test_a_card_says_whether_its_model_takes_colour():
    assert card_colour({"input": {"shape": ["batch", 3, 224, 224]}})
    assert not card_colour({"input": {"shape": ["batch", 1, 224, 224]}})
    assert not card_colour({"input": {}})  # cards from before colour: grey
