"""fp32 ONNX of the anomaly models that verify themselves, and carry everything scoring needs.

Both graphs take raw feature rows `features` (batch, F) float32 and output `score` (batch,), the
same number the Python model computes: IsolationForest via skl2onnx (-decision_function, appended
as a Neg node), the autoencoder via torch.onnx.export (dynamo, opset 18) with standardisation and
the reconstruction error inside the graph. Each export passes onnx.checker and ONNX Runtime
parity against the Python model on real windows before anyone can register it (export.vibration.stage
then writes the model card into the file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from core.errors import ExportError
from core.onnx_runtime import run_batched, session
from export.torch_onnx import export_dynamic_batch

INPUT, OUTPUT = "features", "score"


def onnx_scores(path: Path, features: np.ndarray) -> np.ndarray:
    """Scores (W,) float64 of the file at `path` for feature rows (W, F)."""
    return run_batched(session(path), features, batch=4096).astype(np.float64)


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
    got = onnx_scores(path, features)
    gap = np.abs(got - reference)
    worst = int(np.argmax(gap - rtol * np.abs(reference)))
    if np.any(gap > atol + rtol * np.abs(reference)):
        raise ExportError(
            f"{path.name}: ONNX Runtime score {got[worst]:.6g} vs Python {reference[worst]:.6g} on window {worst} "
            f"(tolerance {atol:g} + {rtol:g} x |score|); do not ship this file"
        )
    return float(gap.max())
