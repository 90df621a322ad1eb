"""One model-card format for every kind of model, read with ONNX Runtime alone; older cards convert."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from core.card import (
    CARD_KEY,
    FORMAT,
    IMAGE_CLASSIFIER,
    LEGACY_VIBRATION_KEY,
    SECTIONS,
    VIBRATION_ANOMALY,
    check_card,
    classes,
    new_card,
    read_card,
    summary,
)
from core.errors import ExportError
from export.metadata import write_card


def identity_model(path, key: str | None = None, value: str | None = None):
    """A one-node ONNX file (y = x), optionally with one metadata entry."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 3])],
    )  # fmt: skip
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    model.ir_version = 10
    if key:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def image_card() -> dict:
    return new_card(
        IMAGE_CLASSIFIER,
        model={"name": "efficientnet_lite0", "classes": ["bad", "good"]},
        input={"name": "grey", "dtype": "float32", "shape": ["batch", 1, 64, 64], "preprocessing": {"image_size": 64}},
        outputs=[{"name": "probabilities", "shape": ["batch", 2], "meaning": "class probabilities"}],
        decision={"rule": "reject when ...", "ok_class": "good", "defect_threshold": 0.3},
    )  # fmt: skip


def test_a_written_card_reads_back_the_same_with_onnx_runtime(tmp_path):
    path = identity_model(tmp_path / "m.onnx")
    write_card(path, image_card())
    card = read_card(path)
    assert card == json.loads(json.dumps(image_card()))
    assert set(SECTIONS) <= set(card) and card["format"] == FORMAT
    assert classes(card) == ["bad", "good"]
    assert set(summary(card)) == {"kind", "input", "outputs", "decision", "model"}
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["kind"] == IMAGE_CLASSIFIER and json.loads(meta["classes"]) == [
        "bad",
        "good",
    ]  # for any viewer


def test_unknown_kinds_sections_and_files_without_a_card_are_refused(tmp_path):
    with pytest.raises(ExportError, match="unknown model kind 'image-segmenter'"):
        new_card("image-segmenter")
    with pytest.raises(ExportError, match="unknown model-card sections"):
        new_card(IMAGE_CLASSIFIER, extras={})
    with pytest.raises(ExportError, match="missing sections"):
        check_card({"format": FORMAT, "kind": VIBRATION_ANOMALY})
    with pytest.raises(ExportError, match="carries no shopfloor model card"):
        read_card(identity_model(tmp_path / "bare.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ExportError, match="not a readable ONNX model"):
        read_card(tmp_path / "junk.onnx")


def test_cards_of_models_registered_before_this_format_still_read(tmp_path):
    """Versions already in a registry keep working: the old image card (top-level classes) and the
    old vibration card (its own metadata key) are converted on read."""
    old_image = {
        "classes": ["bad", "good"], "backbone": "efficientnet_lite0", "precision": "int8",
        "input": {"name": "grey", "shape": ["batch", 1, 64, 64], "image_size": 64, "resize": "area"},
        "decision": {"ok_class": "good", "defect_threshold": 0.3}, "metrics": {"m": 1}, "lineage": {"run_id": "r"},
    }  # fmt: skip
    card = read_card(identity_model(tmp_path / "old_image.onnx", CARD_KEY, json.dumps(old_image)))
    assert card["kind"] == IMAGE_CLASSIFIER and classes(card) == ["bad", "good"]
    assert card["input"]["preprocessing"]["image_size"] == 64 and card["export"]["precision"] == "int8"
    old_vibration = {
        "kind": "shopfloor.vibration-anomaly", "model": "isolation_forest",
        "feature_set": {"id": "vibration-bearing@v1", "names": ["DE.log_rms"], "config": {}},
        "input": {"name": "features", "dtype": "float32", "shape": ["batch", 1], "sample_rate": 12000.0,
                  "channels": ["DE"], "units": "g", "window": 2048, "hop": 512, "nominal_rpm": 1797.0},
        "output": {"name": "score", "shape": ["batch"], "meaning": "higher = less normal"},
        "decision": {"threshold": 0.1, "rule": "alarm when score > threshold"},
        "normal_profile": {"mean": [0.0], "spread": [1.0]}, "explain": {"top_features": 3, "min_peak_ratio": 2.0},
        "bearing": {"orders": {"BPFI": 5.4}}, "metrics": {}, "lineage": {},
    }  # fmt: skip
    card = read_card(
        identity_model(tmp_path / "old_vib.onnx", LEGACY_VIBRATION_KEY, json.dumps(old_vibration))
    )
    assert card["kind"] == VIBRATION_ANOMALY and card["input"]["preprocessing"]["window"] == 2048
    assert card["input"]["preprocessing"]["feature_set"]["id"] == "vibration-bearing@v1"
    assert card["decision"]["explain"]["min_peak_ratio"] == 2.0 and card["model"]["normal_profile"][
        "spread"
    ] == [1.0]
    with pytest.raises(ExportError, match="has no classes"):
        classes(card)
    assert np.isfinite(card["decision"]["threshold"])
