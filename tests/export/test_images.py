"""ONNX exports verify themselves and carry their own model card."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from core.card import FORMAT, IMAGE_CLASSIFIER, read_card
from core.onnx_runtime import cpu_facts, run_batched, session
from export.images.config import ExportConfig
from export.images.int8 import kernel_saturation_gap, quantize_int8
from tests.fixtures.models import SIZE
from training.images.data import training_data

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
        proba = run_batched(sess, np.full((batch, 1, SIZE, SIZE), 100.0, dtype=np.float32))
        assert proba.shape == (batch, 6) and np.allclose(proba.sum(1), 1, atol=1e-3)


def test_the_file_describes_itself(exported_pair):
    (report, _), _ = exported_pair
    card = read_card(report.int8_path)
    assert card["format"] == FORMAT and card["kind"] == IMAGE_CLASSIFIER
    assert card["input"]["preprocessing"]["image_size"] == SIZE and len(card["model"]["classes"]) == 6
    assert card["outputs"][0]["shape"] == ["batch", 6]
    assert "defect_threshold" in card["decision"] and card["decision"]["ok_class"] == "MT_Free"
    assert {"onnx_fp32", "onnx_int8", "pytorch_fp32"} <= set(card["metrics"])
    assert (
        card["export"]["precision"] == "int8" and read_card(report.fp32_path)["export"]["precision"] == "fp32"
    )
    quantization = card["metrics"]["int8_quantization"]
    assert quantization["weights"] == "pair-safe, GPTQ-rounded"
    assert quantization["kernel_saturation_gap"] == 0.0  # the export checked its fast kernels
    assert card["metrics"]["measured_on"] == cpu_facts()  # latencies name the CPU they hold for
    # the reference a drift monitor compares devices against: the int8 file on the held-out images
    reference = card["reference"]
    assert reference["images"] == report.eval_images
    assert (
        sum(reference["top_probability_histogram"])
        == sum(reference["entropy_histogram"])
        == report.eval_images
    )
    assert np.isclose(sum(reference["predicted_class_share"]), 1.0)
    assert card["lineage"] == {"test": "v1"}


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
    weights keep every |q_a| + |q_b| <= 128 (so 255 * 128 fits), with 8 bits where a pair allows."""
    (report, _), manifest = exported_pair
    classes = sorted(manifest["label"].unique())
    grey = training_data(manifest, classes, SIZE, tmp_path / "cache").images[:16, None].astype(np.float32)
    for path in (
        report.int8_path,
        quantize_int8(report.fp32_path, grey, tmp_path / "nearest.onnx", ExportConfig()),
    ):
        weights = quantized_conv_weights(path)
        pointwise = [w.reshape(len(w), -1) for depthwise, w in weights if not depthwise]
        depthwise = [w for is_dw, w in weights if is_dw]
        assert pointwise and depthwise
        for w in pointwise:
            assert largest_pair_sum(w) <= 128
        assert max(int(np.abs(w).max()) for w in pointwise) > 64  # finer than 7 bits where a pair allows it
        assert max(int(np.abs(w).max()) for w in depthwise) == 127
        assert kernel_saturation_gap(path, grey) == 0.0  # fast kernels agree with the exact ones
        assert np.allclose(run_batched(session(path), grey).sum(1), 1, atol=1e-3)


def test_the_mask_pooling_head_runs_in_float(exported_pair):
    """The mask head's logits feed a softmax over the grid: uint8 steps there move the attention,
    so the int8 file keeps that path float."""
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


def test_the_file_has_an_embedding_output_for_drift_monitoring(exported_pair):
    """A second output projects the pooled features on 16 principal components fitted at export; the
    int8 file keeps it float and close to the fp32 file's."""
    (report, _), manifest = exported_pair
    classes = sorted(manifest["label"].unique())
    grey = np.full((3, 1, SIZE, SIZE), 90.0, dtype=np.float32)
    outputs = {}
    for path in (report.fp32_path, report.int8_path):
        sess = session(path)
        assert [o.name for o in sess.get_outputs()] == ["probabilities", "embedding"]
        outputs[path] = sess.run(None, {"grey": grey})
        assert outputs[path][1].shape == (3, 16)
    fp32, int8 = outputs[report.fp32_path][1], outputs[report.int8_path][1]
    assert np.abs(fp32 - int8).max() < 0.2 * np.abs(fp32).max()
    card = read_card(report.int8_path)
    assert [o["name"] for o in card["outputs"]] == ["probabilities", "embedding"]
    assert len(card["reference"]["embedding_sample"]) == min(128, report.eval_images)
    assert len(card["reference"]["embedding_sample"][0]) == 16 and len(classes) == 6
