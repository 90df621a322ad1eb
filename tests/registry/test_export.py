"""ONNX exports verify themselves and carry their own model card."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from registry.config import ExportConfig
from registry.onnx_export import kernel_saturation_gap, quantize_int8, read_card, run_onnx, session
from registry.onnx_runtime import cpu_facts
from tests.registry.conftest import SIZE
from training.train import training_data

pytestmark = pytest.mark.slow


def test_fp32_and_int8_exports_pass_checker_and_parity(exported_pair):
    (report, _), _ = exported_pair
    for path in (report.fp32_path, report.int8_path):
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    assert report.parity_max_abs <= 1e-4
    assert report.int8.size_bytes < 0.5 * report.fp32.size_bytes
    assert 0.0 <= report.top1_agreement <= 1.0


def test_dynamic_batch_and_probabilities(exported_pair):
    (report, _), _ = exported_pair
    sess = session(report.int8_path)
    for batch in (1, 3):
        proba = run_onnx(sess, np.full((batch, 1, SIZE, SIZE), 100.0, dtype=np.float32))
        assert proba.shape == (batch, 6) and np.allclose(proba.sum(1), 1, atol=1e-3)


def test_the_file_describes_itself(exported_pair):
    (report, _), _ = exported_pair
    card = read_card(report.int8_path)
    assert card["input"]["image_size"] == SIZE and len(card["classes"]) == 6
    assert "defect_threshold" in card["decision"] and card["decision"]["ok_class"] == "MT_Free"
    assert {"onnx_fp32", "onnx_int8", "pytorch_fp32"} <= set(card["metrics"])
    assert card["precision"] == "int8"
    quantization = card["metrics"]["int8_quantization"]
    assert quantization["weight_range"] == ExportConfig().weight_range == "pair-safe"
    assert quantization["kernel_saturation_gap"] == 0.0  # the export checked its fast kernels
    assert card["metrics"]["measured_on"] == cpu_facts()  # latencies name the CPU they hold for


def quantized_conv_weights(path) -> list[tuple[bool, np.ndarray]]:
    """(depthwise?, int8 weight) of every quantized convolution in a QDQ file."""
    model = onnx.load(str(path))
    ints = {
        t.name: onnx.numpy_helper.to_array(t)
        for t in model.graph.initializer
        if t.data_type == onnx.TensorProto.INT8
    }
    dequantized = {
        n.output[0]: ints[n.input[0]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in ints
    }
    return [
        (any(a.name == "group" and a.i > 1 for a in n.attribute), dequantized[n.input[1]].astype(np.int32))
        for n in model.graph.node
        if n.op_type == "Conv" and n.input[1] in dequantized
    ]  # fmt: skip


def largest_pair_sum(weight: np.ndarray) -> int:
    """Over all output channels: the largest |q_a| + |q_b| of adjacent input pairs (2j, 2j+1)."""
    flat = np.abs(weight.reshape(len(weight), -1))
    flat = np.pad(flat, ((0, 0), (0, flat.shape[1] % 2)))
    return int((flat[:, 0::2] + flat[:, 1::2]).max())


def test_pair_safe_weights_keep_int16_pair_sums_and_use_eight_bits(exported_pair, tmp_path):
    """AVX2 CPUs without VNNI add u8 x s8 products of adjacent input channels in int16: pair-safe
    weights keep every |q_a| + |q_b| <= 128 (so 255 * 128 fits), 7-bit weights cap each at 64."""
    (report, _), manifest = exported_pair
    classes = sorted(manifest["label"].unique())
    grey = training_data(manifest, classes, SIZE, tmp_path / "cache").images[:16, None].astype(np.float32)
    for weight_range in ("pair-safe", "reduced"):
        path = quantize_int8(
            report.fp32_path, grey, tmp_path / f"{weight_range}.onnx", ExportConfig(weight_range=weight_range)
        )
        weights = quantized_conv_weights(path)
        pointwise = [w.reshape(len(w), -1) for depthwise, w in weights if not depthwise]
        depthwise = [w for is_dw, w in weights if is_dw]
        assert pointwise and depthwise
        peak = max(int(np.abs(w).max()) for w in pointwise)
        if weight_range == "pair-safe":
            for w in pointwise:
                assert largest_pair_sum(w) <= 128
            assert peak > 64  # finer than 7 bits where a pair allows it
            assert max(int(np.abs(w).max()) for w in depthwise) == 127
        else:
            assert peak <= 64 and max(int(np.abs(w).max()) for w in depthwise) <= 64
        assert kernel_saturation_gap(path, grey) == 0.0  # fast kernels agree with the exact ones
        assert np.allclose(run_onnx(session(path), grey).sum(1), 1, atol=1e-3)


def test_the_mask_pooling_head_runs_in_float(exported_pair):
    """The mask head's logits feed a softmax over the grid: uint8 steps there move the attention,
    and the quantization-aware simulation keeps that path float, so the int8 file must too."""
    (report, _), _ = exported_pair
    model = onnx.load(str(report.int8_path))
    producer = {out: node.op_type for node in model.graph.node for out in node.output}
    floats = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    mask_convs = [
        n for n in model.graph.node
        if n.op_type == "Conv" and n.input[1] in floats
        and onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == n.input[1])).shape[0] == 1
    ]  # fmt: skip
    assert len(mask_convs) == 1  # its weight stays float (a quantized one would come from DequantizeLinear)
    pooling = [n for n in model.graph.node if n.op_type in {"Softmax", "MatMul", "Concat", "Gemm"}]
    assert {n.op_type for n in pooling} == {"Softmax", "MatMul", "Concat", "Gemm"}
    for node in pooling:
        assert all(producer.get(name) != "DequantizeLinear" for name in node.input), node.name
    consumers = [n.op_type for n in model.graph.node if mask_convs[0].output[0] in n.input]
    assert consumers and "QuantizeLinear" not in consumers
