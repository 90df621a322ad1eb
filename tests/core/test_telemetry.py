"""core.telemetry.image_stats against the textbook formulas in float64 (it uses integer shortcuts)."""

from __future__ import annotations

import numpy as np
import pytest

from core.telemetry import image_stats
from inputs.images import read_grey, resize_square
from tests.fixtures.data import TILES


@pytest.mark.parametrize("source", ["random", "photo"])
def test_image_statistics_match_the_definitions(source):
    if source == "random":
        grey = np.random.default_rng(0).integers(0, 256, (97, 131)).astype(np.uint8)
        grey[:3, :3] = 0
    else:
        grey = resize_square(read_grey(next(iter(sorted(TILES.rglob("*.jpg"))))), 224)
    x = grey.astype(np.float64)
    laplacian = x[1:-1, :-2] + x[1:-1, 2:] + x[:-2, 1:-1] + x[2:, 1:-1] - 4 * x[1:-1, 1:-1]
    stats = image_stats(grey)
    assert stats["brightness"] == pytest.approx(x.mean(), rel=1e-12)
    assert stats["contrast"] == pytest.approx(x.std(), rel=1e-9)
    assert stats["blur"] == pytest.approx(laplacian.var(), rel=1e-9)
    assert stats["clipped"] == pytest.approx(np.mean((grey == 0) | (grey == 255)))
