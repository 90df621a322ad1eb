"""ONNX exports verify themselves and carry their own model card."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from registry.config import ExportConfig
from registry.onnx_export import quantize_int8, read_card, run_onnx, session
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
    assert card["metrics"]["int8_quantization"]["reduce_range"] == ExportConfig().reduce_range


def test_reduce_range_keeps_int8_weights_in_seven_bits(exported_pair, tmp_path):
    """7-bit weights are what keep AVX2 CPUs without VNNI from saturating their int16 sums."""
    (report, _), manifest = exported_pair
    classes = sorted(manifest["label"].unique())
    grey = training_data(manifest, classes, SIZE, tmp_path / "cache").images[:16, None].astype(np.float32)
    peaks = {}
    for reduce_range in (False, True):
        path = quantize_int8(
            report.fp32_path, grey, tmp_path / f"{reduce_range}.onnx", ExportConfig(reduce_range=reduce_range)
        )
        model = onnx.load(str(path))
        weights = [
            onnx.numpy_helper.to_array(t)
            for t in model.graph.initializer
            if t.data_type == onnx.TensorProto.INT8
        ]
        peaks[reduce_range] = max(int(np.abs(w.astype(np.int16)).max()) for w in weights)
        proba = run_onnx(session(path), grey)
        assert np.allclose(proba.sum(1), 1, atol=1e-3)
    assert peaks[False] == 127 and peaks[True] <= 64
