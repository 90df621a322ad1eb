"""fp32 and int8 ONNX exports of the defect classifier that verify themselves before anyone ships them.

fp32: `torch.onnx.export` (dynamo, opset 18, dynamic batch), then onnx.checker and ONNX Runtime
against PyTorch on real images. int8: static QDQ quantization with per-channel weights,
calibrated on training images (dynamic quantization is wrong for CNNs: 57 ms and inaccurate
here). Preprocessing (grey values 0..255 -> normalised 3 channels) is inside the graph, and the
classes, input size, resize rule and reject threshold are in the file's metadata.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from data_checks.errors import ExportError
from registry.config import ExportConfig
from registry.onnx_runtime import session
from registry.torch_onnx import export_dynamic_batch
from training.model import DefectClassifier, ProbabilityModel
from training.preprocess import RESIZE

OPSET = 18  # asking for 17 prints a traceback and yields 18 anyway (STACK_NOTES)
INPUT, OUTPUT = "grey", "probabilities"


def run_onnx(sess: ort.InferenceSession, grey: np.ndarray, batch: int = 32) -> np.ndarray:
    """Probabilities for float32 grey input (N, 1, S, S)."""
    return np.concatenate(
        [sess.run([OUTPUT], {INPUT: grey[i : i + batch]})[0] for i in range(0, len(grey), batch)]
    )


def export_fp32(model: DefectClassifier, path: Path) -> Path:
    """ONNX with a dynamic batch axis; the softmax and the normalisation are inside."""
    shipped = ProbabilityModel(model.eval().to("cpu", memory_format=torch.contiguous_format)).eval()
    size = model.spec.image_size
    example = torch.full((2, 1, size, size), 128.0).contiguous()  # contiguous: channels-last fails export
    export_dynamic_batch(shipped, example, path, INPUT, OUTPUT, OPSET, max_batch=1024)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def check_parity(model: DefectClassifier, onnx_path: Path, grey: np.ndarray, atol: float = 1e-4) -> float:
    """Max |ONNX Runtime - PyTorch| over real images; raises ExportError above `atol`."""
    with torch.inference_mode():
        reference = ProbabilityModel(model.eval()).eval()(torch.from_numpy(grey)).numpy()
    got = run_onnx(session(onnx_path), grey)
    gap = float(np.abs(got - reference).max())
    if gap > atol:
        raise ExportError(f"{onnx_path.name}: ONNX Runtime differs from PyTorch by {gap:.2e} (> {atol:.0e})")
    return gap


class _Calibration(CalibrationDataReader):
    def __init__(self, grey: np.ndarray, batch: int = 16) -> None:
        self.batches = iter([{INPUT: grey[i : i + batch]} for i in range(0, len(grey), batch)])

    def get_next(self):
        return next(self.batches, None)


def mask_head_nodes(model: onnx.ModelProto) -> list[str]:
    """The mask head's 1-output-channel convolution and every node downstream of it (the mask-pooled head).

    Why float: its logits go through a softmax over the 7x7 grid, where one uint8 step of a logit
    moves the attention weights by a few percent, and its concat joins two differently scaled pools
    under one uint8 scale. The quantization-aware simulation (registry/quant_aware.py) keeps this
    path float, so the export must too. It costs a 1x1 convolution at stride 16 and the pooling.
    """
    weights = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    frontier = [
        n for n in model.graph.node
        if n.op_type == "Conv" and n.input[1] in weights and weights[n.input[1]].dims[0] == 1
    ]  # fmt: skip
    kept: dict[str, None] = {}
    while frontier:
        node = frontier.pop()
        if node.name not in kept:
            kept[node.name] = None
            frontier += [c for out in node.output for c in consumers.get(out, [])]
    return list(kept)


def float_nodes(model: onnx.ModelProto, float_convs: int) -> list[str]:
    """Nodes kept in float: the in-graph preprocessing, the first `float_convs` convolutions, and the head.

    Measured on the magnetic tiles (test split, 269 images): quantizing everything agrees with fp32
    on 93 % of top-1 predictions; keeping the stem and the first depthwise-separable block (three
    convolutions, 3 % of the compute) in float raises that to 99 % at almost the same latency.
    The head (pool, classifier, softmax) stays float so probabilities sum to 1 instead of to
    multiples of 1/255; with mask pooling, so does the mask head's path (mask_head_nodes).
    """
    nodes = list(model.graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    keep = [n.name for n in nodes[: convs[0]]]  # grey -> normalised 3-channel input
    keep += [nodes[i].name for i in convs[:float_convs]]
    keep += [
        n.name
        for n in nodes[convs[-1] + 1 :]
        if n.op_type in {"ReduceMean", "GlobalAveragePool", "Reshape", "Flatten", "Gemm", "MatMul", "Softmax"}
    ]
    return list(dict.fromkeys(keep + mask_head_nodes(model)))


CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}


def pair_bound(weight: torch.Tensor) -> torch.Tensor:
    """Per output channel: the largest |w_a| + |w_b| over adjacent input pairs (a, b) = (2j, 2j+1)."""
    flat = weight.abs().reshape(weight.shape[0], -1)
    if flat.shape[1] % 2:
        flat = torch.nn.functional.pad(flat, (0, 1))
    return (flat[:, 0::2] + flat[:, 1::2]).amax(1)


def weight_grid(weight: torch.Tensor, depthwise: bool, weight_range: str) -> tuple[torch.Tensor, int]:
    """Per output channel, the weight value that maps to the largest integer, and that integer.

    The one definition of each weight grid, shared by the export (weight_overrides, numpy weights)
    and its PyTorch simulation (registry/quant_aware.py, with gradients); scale = bound / qmax.

    Why these grids: on x86 CPUs without VNNI (AVX2, like the 2-core edge box) ONNX Runtime's fast
    u8 x s8 kernels multiply a pair of adjacent input channels and add the two products in int16
    (vpmaddubsw), so 255 * (|q_a| + |q_b|) must stay <= 32767, i.e. |q_a| + |q_b| <= 128. Plain
    8-bit weights ("full") break that and the error lands on a few images at a time; 7-bit weights
    ("reduced", |q| <= 64) keep it at half the resolution. "pair-safe" gives each output channel
    the scale (largest pair sum) / 127: rounding then adds at most 1, so every pair stays <= 128,
    and the 8-bit grid is used wherever the largest weight's neighbour is small. Depthwise
    convolutions widen to 16 bits before adding, so they take plain 8-bit weights.
    """
    peak = weight.abs().reshape(weight.shape[0], -1).amax(1)
    if weight_range == "reduced":
        return peak, 64
    if depthwise or weight_range == "full":
        return peak, 127
    return pair_bound(weight), 127


def weight_overrides(
    model: onnx.ModelProto,
    excluded: set[str],
    weight_range: str,
    scales: dict[str, list[float]] | None = None,
) -> dict:
    """ONNX Runtime TensorQuantOverrides that put each quantized convolution's weights on weight_grid.

    `scales`, by weight name: per-channel scales already chosen (weights rounded beforehand by
    registry/weight_rounding.py and sitting on that grid); every quantized convolution must have
    them then, and ONNX Runtime's scale, max |rmin, rmax| / 127, is set to reproduce them.
    `check_kernel_saturation` verifies the result on real images.
    """
    weights = {t.name: t for t in model.graph.initializer}
    overrides = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or node.name in excluded or node.input[1] not in weights:
            continue
        if scales is not None:
            if node.input[1] not in scales:
                raise ExportError(f"{node.input[1]}: no int8 weight scales from the weight rounding")
            bounds = [127 * s for s in scales[node.input[1]]]
        elif weight_range == "reduced":
            continue  # quantize_static's own reduce_range gives every weight the 7-bit grid
        else:
            weight = torch.tensor(onnx.numpy_helper.to_array(weights[node.input[1]]))
            depthwise = any(a.name == "group" and a.i > 1 for a in node.attribute)
            bounds = weight_grid(weight, depthwise, weight_range)[0].tolist()
        overrides[node.input[1]] = [
            {"axis": 0, "reduce_range": False, "rmin": -float(b), "rmax": float(b)} for b in bounds
        ]
    return overrides


def quantize_int8(
    fp32_path: Path,
    calibration_grey: np.ndarray,
    path: Path,
    cfg: ExportConfig,
    weight_scales: dict[str, list[float]] | None = None,
) -> Path:
    """Static int8 (QDQ, per-channel weights, uint8 activations) calibrated on real images.

    From `cfg`: `float_convs` (see float_nodes); `calibration_method`, how activation ranges are
    read from the calibration images: min/max of what was seen, or a percentile / entropy cut that
    ignores rare outliers; `weight_range` (see weight_overrides). `weight_scales`: per-channel
    scales by ONNX weight name, when the weights were rounded beforehand (weight_overrides).
    """
    prepared = path.with_name(path.stem + ".prep.onnx")
    logging.getLogger("root").setLevel(logging.ERROR)  # quant_pre_process logs shape-inference notes
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    model = onnx.load(str(prepared))
    excluded = float_nodes(model, cfg.float_convs)
    quantize_static(
        str(prepared), str(path), _Calibration(calibration_grey), quant_format=QuantFormat.QDQ,
        per_channel=True, reduce_range=cfg.weight_range == "reduced" and weight_scales is None, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8, nodes_to_exclude=excluded, calibrate_method=CALIBRATION_METHODS[cfg.calibration_method],
        extra_options={"TensorQuantOverrides": weight_overrides(model, set(excluded), cfg.weight_range, weight_scales)},
    )  # fmt: skip
    prepared.unlink(missing_ok=True)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def kernel_saturation_gap(int8_path: Path, grey: np.ndarray, threads: int = 2) -> float:
    """Max |fast int8 kernels - exact int8 kernels| over `grey`: 0 when nothing saturates.

    ONNX Runtime's exact mode (u8 x u8) is slow but cannot overflow; on CPUs with VNNI, or ARM,
    both modes run the same kernels and the gap is 0 by construction.
    """
    fast = run_onnx(session(int8_path, threads), grey)
    exact = run_onnx(session(int8_path, threads, exact_int8=True), grey)
    return float(np.abs(fast - exact).max())


def check_kernel_saturation(int8_path: Path, grey: np.ndarray, threads: int = 2, atol: float = 1e-6) -> float:
    """Raise ExportError when this CPU's fast int8 kernels saturate on real images (see weight_overrides)."""
    gap = kernel_saturation_gap(int8_path, grey, threads)
    if gap > atol:
        raise ExportError(
            f"{int8_path.name}: the int8 kernels of this CPU saturate (output off by {gap:.3f} from the exact "
            "kernels); export with weight_range 'pair-safe' or 'reduced'"
        )
    return gap


def write_metadata(path: Path, card: dict) -> None:
    """Store the model card in the ONNX file itself, so the file alone says how to feed it."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in {
        "shopfloor.card": json.dumps(card),
        "classes": json.dumps(card["classes"]),
        "image_size": str(card["input"]["image_size"]),
        "resize": RESIZE,
        "decision": json.dumps(card["decision"]),
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def read_card(path: Path) -> dict:
    """The model card stored in an exported file."""
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if "shopfloor.card" not in meta:
        raise ExportError(f"{path} carries no shopfloor model card; was it exported by shopfloor?")
    return json.loads(meta["shopfloor.card"])


@dataclass(frozen=True)
class ExportedModels:
    fp32: Path
    int8: Path
    parity_max_abs: float
