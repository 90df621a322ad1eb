"""ONNX exports verify themselves and carry their own model card."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from registry.onnx_export import read_card, run_onnx, session
from tests.registry.conftest import SIZE

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
