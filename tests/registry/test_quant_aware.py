"""Quantization-aware distillation: the PyTorch simulation of int8 matches ONNX Runtime's, and distilling helps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from registry.config import ExportConfig
from registry.export import int8_for_edge
from registry.onnx_export import export_fp32, run_onnx, session
from registry.quant_aware import conv_bn_pairs, plain_copy, simulated_int8

pytestmark = pytest.mark.slow


def probabilities(model, grey):
    with torch.inference_mode():
        return model(torch.from_numpy(grey)).softmax(1).numpy()


def test_simulation_reproduces_most_of_onnx_runtime_int8_error(backbone_and_tiles, tmp_path):
    model, grey = backbone_and_tiles
    cfg = ExportConfig(quant_aware_epochs=0, weight_rounding="nearest")  # the rounding the simulation mirrors
    fp32 = export_fp32(model, tmp_path / "fp32.onnx")
    int8 = int8_for_edge(model, fp32, grey, grey[:32], tmp_path / "int8.onnx", cfg)
    ort_int8 = run_onnx(session(int8), grey)
    simulated = probabilities(simulated_int8(model, grey[:32], cfg), grey)
    exact = probabilities(model, grey)
    int8_error = np.abs(ort_int8 - exact).mean()
    assert int8_error > 0
    # the simulation rounds where ONNX Runtime rounds: it sits far closer to int8 than fp32 does
    assert np.abs(simulated - ort_int8).mean() < 0.6 * int8_error


def test_distillation_brings_int8_closer_to_fp32_and_exports_plain_weights(backbone_and_tiles, tmp_path):
    model, grey = backbone_and_tiles
    fp32 = export_fp32(model, tmp_path / "fp32.onnx")
    exact = run_onnx(session(fp32), grey)
    errors = {}
    for epochs in (0, 10):
        cfg = ExportConfig(quant_aware_epochs=epochs, quant_aware_lr=3e-6, weight_rounding="nearest")
        int8 = int8_for_edge(model, fp32, grey, grey[:32], tmp_path / f"int8-{epochs}.onnx", cfg)
        errors[epochs] = np.abs(run_onnx(session(int8), grey) - exact).mean()
    assert errors[10] < 0.8 * errors[0], errors
    assert not (tmp_path / "int8-10.source.onnx").exists()  # the student's fp32 file is not left behind


def test_plain_copy_has_no_rounding_left(backbone_and_tiles):
    model, grey = backbone_and_tiles
    student = simulated_int8(model, grey[:16], ExportConfig())
    plain = plain_copy(model, student)
    assert all(not hasattr(conv, "parametrizations") for _, conv, _ in conv_bn_pairs(plain.net))
    assert not any(m._forward_hooks for m in plain.modules())
    np.testing.assert_allclose(probabilities(plain, grey[:8]), probabilities(model, grey[:8]), atol=1e-6)
