"""PatchCore plumbing on a few real tiles at 64 px: shapes, the threshold rule, the coreset, export parity.

Whether defects outscore goods is a benchmark question (benchmarks/image_anomaly.py): at this size
and with a dozen images it is not guaranteed, so nothing here asserts it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from export.images.patchcore import check_parity, export_onnx
from tests.fixtures.data import TILES
from training.images.patchcore import (
    PatchCoreConfig,
    PatchCoreScorer,
    PatchFeatures,
    fit,
    fit_memory_bank,
    k_center_greedy,
    nearest_distance,
    threshold_for,
)
from training.images.pixels import load_pixels

SIZE = 64
CFG = PatchCoreConfig(image_size=SIZE, layers=(2, 3), coreset_fraction=0.25, blur_sigma=1.0)


@pytest.fixture(scope="module")
def tiles() -> tuple[np.ndarray, np.ndarray]:
    """12 good and 6 defect tiles (N, S, S) uint8."""
    good = sorted(str(p) for p in (TILES / "MT_Free" / "Imgs").glob("*.jpg"))[::40][:12]
    bad = [str(sorted((TILES / c / "Imgs").glob("*.jpg"))[0]) for c in ("MT_Blowhole", "MT_Break", "MT_Crack",
                                                                         "MT_Fray", "MT_Uneven", "MT_Blowhole")]  # fmt: skip
    pixels = load_pixels(good + bad, [None] * 18, SIZE, None).images
    return pixels[:12], pixels[12:]


@pytest.fixture(scope="module")
def scorer(tiles) -> PatchCoreScorer:
    return fit(CFG, tiles[0][:8])


def test_score_and_map_shapes(scorer, tiles):
    grey = torch.from_numpy(np.concatenate([tiles[0][8:], tiles[1]])[:, None]).float()
    with torch.inference_mode():
        score, anomaly_map = scorer(grey)
    assert score.shape == (10,) and anomaly_map.shape == (10, 1, SIZE, SIZE)
    assert torch.isfinite(anomaly_map).all() and (score >= 0).all()
    # the blur only averages: the map never exceeds the worst patch
    assert (anomaly_map.amax(dim=(1, 2, 3)) <= score + 1e-4).all()


def test_a_patch_identical_to_a_bank_entry_scores_zero(tiles):
    """With the whole bank kept, every patch of a training image is in it: distance 0, up to the rounding
    of |a|^2 - 2ab + |b|^2 in float32 (the square root magnifies it: about 0.06 on norms of ~100)."""
    whole = fit(CFG.model_copy(update={"coreset_fraction": 1.0, "blur_sigma": 0.0}), tiles[0][:2])
    with torch.inference_mode():
        score, anomaly_map = whole(torch.from_numpy(tiles[0][:2, None]).float())
        other, _ = whole(torch.from_numpy(tiles[0][8:10, None]).float())
    assert score.max() < 0.15 and anomaly_map.abs().max() < 0.15
    assert other.min() > 10 * score.max()  # while a different tile is far from the bank
    bank = torch.randn(50, 7)
    assert nearest_distance(bank[None, 10:13], bank, (bank * bank).sum(1)).max() < 1e-2  # float32 rounding


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.1, 0.25, 0.5])
def test_threshold_rejects_at_most_the_target_share_of_goods(rate):
    rng = np.random.default_rng(0)
    for n in (1, 7, 20, 101):
        scores = rng.normal(size=n)
        scores[: n // 3] = scores[0]  # ties must not push the rate over
        threshold = threshold_for(scores, rate)
        assert (scores > threshold).sum() <= math.floor(rate * n)
        assert (scores > threshold).sum() >= math.floor(rate * n) - n // 3  # and it does reject some


def test_coreset_is_deterministic_and_sized():
    patches = torch.randn(2000, 300, generator=torch.Generator().manual_seed(3))
    bank = fit_memory_bank(patches, 0.05, seed=7, projection_dims=32)
    assert bank.shape == (100, 300) and torch.equal(bank, fit_memory_bank(patches, 0.05, 7, 32))
    assert not torch.equal(bank, fit_memory_bank(patches, 0.05, 8, 32))
    index = k_center_greedy(patches, 500, seed=0)
    assert len(set(index.tolist())) == 500  # distinct rows


def test_coreset_keeps_the_farthest_point_first():
    points = torch.randn(300, 4, generator=torch.Generator().manual_seed(0)) * 0.1
    points[123] = 50.0  # one far outlier, as a rare pattern on a good part would be
    index = k_center_greedy(points, 2, seed=1)
    assert 123 in index.tolist()
    first = points[index[0]]
    assert index[1] == torch.argmax(((points - first) ** 2).sum(1))  # each pick: farthest from the chosen


def test_config_rejects_even_neighbourhoods_and_unordered_layers():
    with pytest.raises(ValueError, match="odd"):
        PatchCoreConfig(neighbourhood=2)
    with pytest.raises(ValueError, match="rising"):
        PatchCoreConfig(layers=(3, 2))


def test_features_are_on_the_finest_grid(tiles):
    features = PatchFeatures(
        CFG.model_copy(update={"layers": (2, 3, 4), "feature_dims": 64}), pretrained=False
    )
    with torch.inference_mode():
        out = features(torch.from_numpy(tiles[0][:2, None]).float())
    assert out.shape == (2, 64, SIZE // 8, SIZE // 8)


@pytest.mark.slow
def test_onnx_matches_torch_on_a_batch(scorer, tiles, tmp_path):
    path = export_onnx(scorer, tmp_path / "patchcore.onnx", SIZE)
    grey = np.concatenate([tiles[0][8:], tiles[1]])[:, None].astype(np.float32)
    assert check_parity(scorer, path, grey, atol=1e-4) <= 1e-4


def test_colour_images_keep_three_channels_through_fit_and_export(tmp_path):
    """The ball screws are colour photos: the bank is fitted on RGB patches and the file takes (N, 3, S, S)."""
    import pandas as pd

    from core.onnx_runtime import session
    from inputs.images import channels_first
    from tests.fixtures.data import BALL_SCREW

    paths = [str(BALL_SCREW / p) for p in pd.read_csv(BALL_SCREW / "ball_screw.csv")["path"][:6]]
    rgb = load_pixels(paths, [None] * 6, SIZE, None, colour=True).images
    assert rgb.shape == (6, SIZE, SIZE, 3)
    scorer = fit(CFG, rgb[:4])
    path = export_onnx(scorer, tmp_path / "colour.onnx", SIZE, channels=3)
    assert session(path).get_inputs()[0].shape[1] == 3
    assert check_parity(scorer, path, channels_first(rgb[4:]), atol=1e-4) <= 1e-4
