"""GPTQ weight rounding: on the export's own grid, closer to fp32 on real images than nearest rounding."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from core.errors import ExportError
from core.onnx_runtime import run_batched, session
from export.images.config import ExportConfig
from export.images.gptq import conv_bn_pairs, folded_scale, gptq_integers, round_weights_for_int8
from export.images.int8 import kernel_saturation_gap, quantize_int8, weight_overrides
from export.images.onnx import export_fp32
from export.images.stage import int8_for_edge
from tests.export.test_images import largest_pair_sum, quantized_conv_weights
from tests.fixtures.models import SIZE
from training.images.model import DefectClassifier, make_spec


def correlated_inputs(rows: int, inputs: int, seed: int = 0) -> torch.Tensor:
    """Inputs whose channels move together, as the channels of a real feature map do (one fixed
    mixing of the channels; `seed` draws the samples)."""
    mixing = np.random.default_rng(100).normal(size=(inputs, inputs)) * 0.3 + np.eye(inputs)
    samples = np.random.default_rng(seed).normal(size=(rows, inputs))
    return torch.tensor(np.maximum(samples @ mixing, 0))


def output_error(q: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor, x: torch.Tensor) -> float:
    return float(((x @ (q * scale[:, None]).T - x @ weight.T) ** 2).mean())


def test_gptq_moves_a_layers_output_less_than_nearest_rounding_on_the_same_grid():
    rng = np.random.default_rng(1)
    weight = torch.tensor(rng.normal(size=(16, 32)))
    x = correlated_inputs(4000, 32)
    scale = weight.abs().amax(1) / 127 * 8  # a coarse grid, so rounding matters
    q = gptq_integers(weight, x.T @ x / len(x), scale, qmax=127, pair_safe=False)
    nearest = torch.round(weight / scale[:, None])
    assert torch.equal(q, torch.round(q)) and q.abs().max() <= 127
    assert (q - nearest).abs().max() >= 1  # some weights were rounded the other way
    held_out = correlated_inputs(4000, 32, seed=2)  # the same channel statistics, other samples
    # measured: 0.069 against 0.127
    assert output_error(q, scale, weight, held_out) < 0.7 * output_error(nearest, scale, weight, held_out)


def test_gptq_keeps_adjacent_pairs_within_the_int16_bound():
    rng = np.random.default_rng(3)
    weight = torch.tensor(rng.uniform(0.9, 1.0, size=(8, 10)))  # every pair near the bound
    x = correlated_inputs(2000, 10)
    scale = torch.full((8,), 2.0 / 127)  # pair bound 2.0 -> |q_a| + |q_b| about 120
    q = gptq_integers(weight, x.T @ x / len(x), scale, qmax=127, pair_safe=True)
    assert (q[:, 0::2].abs() + q[:, 1::2].abs()).max() <= 128


def test_depthwise_rows_use_their_own_input_moments():
    """A depthwise channel sees only its own input, so each row has its own H: the same weights
    round differently when the row's two inputs move together than when they move oppositely."""
    rng = np.random.default_rng(0)
    shared, noise = rng.normal(size=(2000, 1)), rng.normal(size=(2000, 2)) * 0.3
    together = torch.tensor(np.hstack([shared, shared]) + noise)
    opposite = torch.tensor(np.hstack([shared, -shared]) + noise)
    weight = torch.tensor([[0.36, 0.345], [0.36, 0.345]], dtype=torch.float64)
    moments = torch.stack([together.T @ together, opposite.T @ opposite]) / 2000
    scale = torch.full((2,), 0.1, dtype=torch.float64)
    q = gptq_integers(weight, moments, scale, qmax=127, pair_safe=False)
    nearest = torch.round(weight / 0.1)
    assert torch.equal(q[0], nearest[0])  # +0.04 on the first input is undone by rounding the second down
    assert torch.equal(
        q[1], torch.tensor([4.0, 4.0], dtype=torch.float64)
    )  # ... or up, when it moves oppositely
    assert output_error(q[1:], scale[1:], weight[1:], opposite) < 0.2 * output_error(
        nearest[1:], scale[1:], weight[1:], opposite
    )  # measured: 0.0006 against 0.0075


def test_precomputed_scales_must_cover_every_quantized_convolution(tmp_path):
    torch.manual_seed(0)
    model = DefectClassifier(make_spec("efficientnet_lite0", ["a", "b"], SIZE, 0.2, False)).eval()
    onnx_model = onnx.load(str(export_fp32(model, tmp_path / "fp32.onnx")))
    with pytest.raises(ExportError, match="no int8 weight scales"):
        weight_overrides(onnx_model, set(), scales={})


def test_a_channel_its_batchnorm_zeroes_keeps_finite_weights():
    torch.manual_seed(0)
    model = DefectClassifier(make_spec("efficientnet_lite0", ["a", "b"], SIZE, 0.2, False)).eval()
    with torch.no_grad():
        model.net.blocks[1][0].bn1.weight[3] = 0.0
    grey = np.random.default_rng(0).uniform(0, 255, size=(4, 1, SIZE, SIZE)).astype(np.float32)
    rounded, scales = round_weights_for_int8(model, grey, ExportConfig())
    assert all(torch.isfinite(p).all() for p in rounded.parameters())
    assert "blocks.1.0.conv_pw" in scales
    with torch.inference_mode():
        assert torch.isfinite(rounded(torch.from_numpy(grey))).all()


@pytest.mark.slow
def test_onnx_runtime_stores_the_gptq_integers_and_the_file_is_closer_to_fp32(backbone_and_tiles, tmp_path):
    model, grey = backbone_and_tiles
    calibration, unseen = grey[:32], grey[32:]
    fp32 = export_fp32(model, tmp_path / "fp32.onnx")
    exact = run_batched(session(fp32), unseen)
    files = {  # nearest rounding: ONNX Runtime rounds the fp32 file's weights on the same pair-safe grid
        "nearest": quantize_int8(fp32, calibration, tmp_path / "nearest.onnx", ExportConfig()),
        "gptq": int8_for_edge(model, calibration, tmp_path / "gptq.onnx", ExportConfig()),
    }
    errors = {name: np.abs(run_batched(session(path), unseen) - exact).mean() for name, path in files.items()}
    assert errors["gptq"] < 0.8 * errors["nearest"], errors
    assert not (tmp_path / "gptq.source.onnx").exists()

    rounded, scales = round_weights_for_int8(model, calibration, ExportConfig())
    expected, live = [], []
    for name, conv, bn in conv_bn_pairs(rounded.net)[ExportConfig().float_convs :]:
        folded = conv.weight.detach().double() * folded_scale(bn).double().reshape(-1, 1, 1, 1)
        scale = torch.tensor(scales[name])
        expected.append(torch.round(folded / scale.reshape(-1, 1, 1, 1)).numpy())
        # the pretrained backbone has dead channels (BN running variance 0, weights ~1e-9), where
        # ONNX Runtime picks its own scale; nothing flows through them
        live.append((scale > 1e-7).numpy())
    stored = [w for _, w in quantized_conv_weights(tmp_path / "gptq.onnx")]
    assert len(stored) == len(expected)
    for got, want, alive in zip(stored, expected, live, strict=True):
        assert alive.mean() > 0.95
        np.testing.assert_array_equal(got[alive], want[alive])  # ONNX Runtime kept every rounded integer
    for weight in stored:
        if weight.shape[1] > 1:  # pointwise: the pair bound holds after GPTQ moved weights
            assert largest_pair_sum(weight) <= 128
    assert kernel_saturation_gap(tmp_path / "gptq.onnx", calibration[:16]) == 0.0
