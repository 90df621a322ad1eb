"""fp32 ONNX of the anomaly models that verify themselves, and carry everything scoring needs.

Both graphs take raw feature rows `features` (batch, F) float32 and output `score` (batch,), the
same number the Python model computes: IsolationForest via skl2onnx (-decision_function, appended
as a Neg node), the autoencoder via torch.onnx.export (dynamo, opset 18) with standardisation and
the reconstruction error inside the graph. Each export passes onnx.checker and ONNX Runtime
parity against the Python model on real windows before anyone can register it. The model card
(feature set and config, window, hop, sample rate, channels, units, threshold, normal profile,
bearing geometry) is written into the file's metadata_props, so the file describes itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from data_checks.errors import ExportError
from registry.anomaly_config import AnomalyExportConfig  # noqa: F401  (re-exported: the stage and its settings)
from registry.onnx_runtime import session
from registry.torch_onnx import export_dynamic_batch

INPUT, OUTPUT = "features", "score"
CARD_KEY = "shopfloor.anomaly_card"


def onnx_scores(sess: ort.InferenceSession, features: np.ndarray) -> np.ndarray:
    """Scores (W,) float64 for feature rows (W, F)."""
    if len(features) == 0:
        return np.empty(0)
    return sess.run([OUTPUT], {INPUT: np.ascontiguousarray(features, dtype=np.float32)})[0].astype(np.float64)


def export_isolation_forest(model, n_features: int, path: Path, opset: int) -> Path:
    """skl2onnx graph (ai.onnx.ml 3), then `score` = -scores reshaped to (batch,)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    # model_optim=False: the identity-removal pass is quadratic in the tree count (200 trees: 61 s vs 20 s)
    proto = to_onnx(
        model.forest, initial_types=[(INPUT, FloatTensorType([None, n_features]))],
        target_opset={"": opset, "ai.onnx.ml": 3}, model_optim=False,
    )  # fmt: skip
    graph = proto.graph
    decision = next(o for o in graph.output if o.name == "scores")  # decision_function, (batch, 1)
    graph.initializer.append(onnx.numpy_helper.from_array(np.array([-1], np.int64), "flat_shape"))
    graph.node.extend(
        [
            onnx.helper.make_node("Neg", [decision.name], ["neg_scores"], name="anomaly_score"),
            onnx.helper.make_node("Reshape", ["neg_scores", "flat_shape"], [OUTPUT], name="flatten_score"),
        ]
    )
    del graph.output[:]
    graph.output.append(onnx.helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT, ["batch"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


def export_autoencoder(model, n_features: int, path: Path, opset: int) -> Path:
    """torch.onnx.export (dynamo) of the module that standardises, reconstructs and returns the error."""
    import torch

    net = model.net.eval()
    example = torch.zeros(4, n_features).contiguous()
    return export_dynamic_batch(net, example, path, INPUT, OUTPUT, opset, max_batch=1 << 20)


EXPORTERS = {"isolation_forest": export_isolation_forest, "autoencoder": export_autoencoder}


def check_parity(model, path: Path, features: np.ndarray, atol: float, rtol: float) -> float:
    """Max |ONNX Runtime - Python| over real feature rows; ExportError when beyond atol + rtol x |Python|."""
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    reference = model.score(features)
    got = onnx_scores(session(path), features)
    gap = np.abs(got - reference)
    worst = int(np.argmax(gap - rtol * np.abs(reference)))
    if np.any(gap > atol + rtol * np.abs(reference)):
        raise ExportError(
            f"{path.name}: ONNX Runtime score {got[worst]:.6g} vs Python {reference[worst]:.6g} on window {worst} "
            f"(tolerance {atol:g} + {rtol:g} x |score|); do not ship this file"
        )
    return float(gap.max())


def write_card(path: Path, card: dict) -> None:
    """The card as JSON under CARD_KEY, plus a few plain keys a person can read with any ONNX viewer."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    plain = {
        CARD_KEY: json.dumps(card), "feature_set": card["feature_set"]["id"],
        "sample_rate": str(card["input"]["sample_rate"]), "window": str(card["input"]["window"]),
        "threshold": repr(card["decision"]["threshold"]),
    }  # fmt: skip
    for key, value in plain.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def read_anomaly_card(path: Path) -> dict:
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if CARD_KEY not in meta:
        raise ExportError(
            f"{path} carries no shopfloor anomaly card; was it exported by `shopfloor train anomaly`?"
        )
    return json.loads(meta[CARD_KEY])


@dataclass(frozen=True)
class AnomalyExport:
    path: Path
    card_path: Path
    parity_max_abs: float
    card: dict


def export_anomaly_model(trained, model_name: str, n_features: int, parity_features: np.ndarray,
                         cfg: AnomalyExportConfig, card: dict, out_dir: Path) -> AnomalyExport:  # fmt: skip
    """Export `trained.model`, verify it (checker + parity), write the card into it and beside it."""
    path = EXPORTERS[model_name](trained.model, n_features, out_dir / "anomaly.onnx", cfg.opset)
    rng = np.random.default_rng(0)
    rows = parity_features[rng.permutation(len(parity_features))[: cfg.parity_windows]]
    gap = check_parity(trained.model, path, rows, cfg.parity_atol, cfg.parity_rtol)
    card = card | {"export": {"opset": cfg.opset, "parity_max_abs": gap, "parity_windows": len(rows),
                              "parity_tolerance": {"atol": cfg.parity_atol, "rtol": cfg.parity_rtol}}}  # fmt: skip
    write_card(path, card)
    card_path = out_dir / "model_card.json"
    card_path.write_text(json.dumps(card, indent=2))
    return AnomalyExport(path, card_path, gap, card)
