"""Static int8 (QDQ) copy of the fp32 export, built for the CPUs it will run on.

Per-channel int8 weights on a pair-safe grid (weight_grid), uint8 activations calibrated by
min/max on training images (dynamic quantization is wrong for CNNs: 57 ms and inaccurate here),
the in-graph preprocessing, the first `float_convs` convolutions, the head and the mask-pooling
path in float (float_nodes). `check_kernel_saturation` proves on real images that this CPU's fast
integer kernels give the exact kernels' answers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from core.errors import ExportError
from core.onnx_runtime import run_batched, session
from export.images.config import ExportConfig
from export.images.onnx import INPUT


class _Calibration(CalibrationDataReader):
    def __init__(self, grey: np.ndarray, batch: int = 16) -> None:
        self.batches = iter([{INPUT: grey[i : i + batch]} for i in range(0, len(grey), batch)])

    def get_next(self):
        return next(self.batches, None)


def mask_head_nodes(model: onnx.ModelProto) -> list[str]:
    """The mask head's 1-output-channel convolution and every node downstream of it (the mask-pooled head).

    Why float: its logits go through a softmax over the 7x7 grid, where one uint8 step of a logit
    moves the attention weights by a few percent, and its concat joins two differently scaled pools
    under one uint8 scale. It costs a 1x1 convolution at stride 16 and the pooling.
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


def pair_bound(weight: torch.Tensor) -> torch.Tensor:
    """Per output channel: the largest |w_a| + |w_b| over adjacent input pairs (a, b) = (2j, 2j+1)."""
    flat = weight.abs().reshape(weight.shape[0], -1)
    if flat.shape[1] % 2:
        flat = torch.nn.functional.pad(flat, (0, 1))
    return (flat[:, 0::2] + flat[:, 1::2]).amax(1)


def weight_grid(weight: torch.Tensor, depthwise: bool) -> tuple[torch.Tensor, int]:
    """Per output channel, the weight value that maps to the largest integer, and that integer.

    The one definition of the weight grid, shared by weight_overrides and the GPTQ rounding
    (export.images.gptq); scale = bound / qmax.

    Why these grids: on x86 CPUs without VNNI (AVX2, like the 2-core edge box) ONNX Runtime's fast
    u8 x s8 kernels multiply a pair of adjacent input channels and add the two products in int16
    (vpmaddubsw), so 255 * (|q_a| + |q_b|) must stay <= 32767, i.e. |q_a| + |q_b| <= 128. Plain
    8-bit weights break that and the error lands on a few images at a time; 7-bit weights keep it
    at half the resolution (both measured, RESULTS.md). Pair-safe gives each output channel the
    scale (largest pair sum) / 127: rounding then adds at most 1, so every pair stays <= 128, and
    the 8-bit grid is used wherever the largest weight's neighbour is small. Depthwise
    convolutions widen to 16 bits before adding, so they take plain 8-bit weights.
    """
    if depthwise:
        return weight.abs().reshape(weight.shape[0], -1).amax(1), 127
    return pair_bound(weight), 127


def weight_overrides(
    model: onnx.ModelProto, excluded: set[str], scales: dict[str, list[float]] | None = None
) -> dict:
    """ONNX Runtime TensorQuantOverrides that put each quantized convolution's weights on weight_grid.

    `scales`, by weight name: per-channel scales already chosen (weights rounded beforehand by
    export.images.gptq and sitting on that grid); every quantized convolution must have them
    then, and ONNX Runtime's scale, max |rmin, rmax| / 127, is set to reproduce them.
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
        else:
            weight = torch.tensor(onnx.numpy_helper.to_array(weights[node.input[1]]))
            depthwise = any(a.name == "group" and a.i > 1 for a in node.attribute)
            bounds = weight_grid(weight, depthwise)[0].tolist()
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

    From `cfg`: `float_convs` (see float_nodes); activation ranges are the min/max seen on the
    calibration images. `weight_scales`: per-channel scales by ONNX weight name, when the weights
    were rounded beforehand (weight_overrides).
    """
    prepared = path.with_name(path.stem + ".prep.onnx")
    logging.getLogger("root").setLevel(logging.ERROR)  # quant_pre_process logs shape-inference notes
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    model = onnx.load(str(prepared))
    excluded = float_nodes(model, cfg.float_convs)
    quantize_static(
        str(prepared), str(path), _Calibration(calibration_grey), quant_format=QuantFormat.QDQ,
        per_channel=True, reduce_range=False, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8, nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax,
        extra_options={"TensorQuantOverrides": weight_overrides(model, set(excluded), weight_scales)},
    )  # fmt: skip
    prepared.unlink(missing_ok=True)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def kernel_saturation_gap(int8_path: Path, grey: np.ndarray, threads: int = 2) -> float:
    """Max |fast int8 kernels - exact int8 kernels| over `grey`: 0 when nothing saturates.

    ONNX Runtime's exact mode (u8 x u8) is slow but cannot overflow; on CPUs with VNNI, or ARM,
    both modes run the same kernels and the gap is 0 by construction.
    """
    fast = run_batched(session(int8_path, threads), grey)
    exact = run_batched(session(int8_path, threads, exact_int8=True), grey)
    return float(np.abs(fast - exact).max())


def check_kernel_saturation(int8_path: Path, grey: np.ndarray, threads: int = 2, atol: float = 1e-6) -> float:
    """Raise ExportError when this CPU's fast int8 kernels saturate on real images (see weight_overrides)."""
    gap = kernel_saturation_gap(int8_path, grey, threads)
    if gap > atol:
        raise ExportError(
            f"{int8_path.name}: the int8 kernels of this CPU saturate (output off by {gap:.3f} from the exact "
            "kernels); the pair-safe weight grid should prevent this: please report it with the model"
        )
    return gap
