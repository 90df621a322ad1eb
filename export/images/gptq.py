"""Data-aware rounding of the int8 weights (GPTQ): round each weight so the layer's output on real
images moves least, instead of rounding each weight to its nearest grid point on its own.

Why: on the demo model most of the int8 file's error came from rounding the weights, not the
activations (validation, PyTorch simulation: weight rounding alone 0.0048 mean |p - p_fp32|,
activation rounding alone 0.0031, both 0.0053), and most of it from the projection convolutions
that write the residual streams. Nearest rounding treats every weight on its own; a 1x1
convolution's output error is e^T H e for the row's rounding errors e, with H the second moment
of its inputs, so correlated input channels let one weight's rounding be made up by its
neighbours. GPTQ (Frantar et al. 2022, after Optimal Brain Quantization) rounds the weights of
a row one input at a time and spreads each rounding error over the not-yet-rounded weights
through the inverse of H. It needs H from the calibration images and a few seconds per model;
the grid itself (scales, the pair-safe bound) is the export's, unchanged, so the kernels and
the latency are the same.

The rounded copy is only the int8 file's source: each weight sits exactly on its grid point
and `quantize_int8` is told each convolution's scales (its `weight_scales`), so ONNX Runtime
stores exactly these integers. The fp32 export and every fp32 figure stay the original model's.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track
from timm.layers.padding import pad_same
from torch import nn

from export.images.config import ExportConfig
from export.images.int8 import weight_grid
from training.images.model import DefectClassifier

PAIR_LIMIT = 128  # |q_a| + |q_b| of adjacent input channels (see int8.weight_grid)


def folded_scale(bn: nn.Module) -> torch.Tensor:
    """The per-channel factor the export folds from an eval-mode BatchNorm into the convolution before it."""
    return (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()


def conv_bn_pairs(net: nn.Module) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d]]:
    """Every convolution with the BatchNorm that follows it (timm's conv -> BN order), in forward order."""
    pairs, pending = [], None
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            pending = (name, module)
        elif isinstance(module, nn.BatchNorm2d) and pending is not None:
            pairs.append((*pending, module))
            pending = None
    return pairs


def _padded(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The convolution's input as its kernel sees it (timm's TF-'same' convolutions pad inside forward)."""
    if type(conv).__name__ == "Conv2dSame":
        return pad_same(x, conv.kernel_size, conv.stride, conv.dilation)
    return F.pad(x, [conv.padding[1]] * 2 + [conv.padding[0]] * 2)


def input_second_moments(
    model: DefectClassifier, convs: list[nn.Conv2d], grey: np.ndarray, batch: int = 8
) -> dict[nn.Conv2d, torch.Tensor]:
    """H = E[x x^T] of each convolution's input patches over the images.

    1x1 and full convolutions: one (in*k*k) square matrix for all output channels. Depthwise
    convolutions: one (k*k) matrix per channel, since each channel reads only its own input.
    """
    sums: dict[nn.Conv2d, torch.Tensor] = {}
    counts: dict[nn.Conv2d, int] = dict.fromkeys(convs, 0)

    def record(conv, inputs, _output):
        x = inputs[0].detach().float()
        patches = F.unfold(_padded(conv, x), conv.kernel_size, stride=conv.stride)  # (B, C*k*k, L)
        if conv.groups == 1:
            rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
            moment, count = rows.T @ rows, rows.shape[0]
        else:
            b, _, length = patches.shape
            patches = patches.reshape(b, x.shape[1], -1, length)
            moment, count = torch.einsum("bckl,bcjl->ckj", patches, patches), b * length
        moment = moment.double()  # float32 within a batch, float64 across batches
        sums[conv] = sums[conv] + moment if conv in sums else moment
        counts[conv] += count

    handles = [conv.register_forward_hook(record) for conv in convs]
    try:
        with torch.inference_mode():
            for start in range(0, len(grey), batch):
                model(torch.from_numpy(grey[start : start + batch]))
    finally:
        for handle in handles:
            handle.remove()
    return {conv: sums[conv] / counts[conv] for conv in convs}


def gptq_integers(
    weight: torch.Tensor,
    moment: torch.Tensor,
    scale: torch.Tensor,
    qmax: int,
    pair_safe: bool,
    damp: float = 0.01,
) -> torch.Tensor:
    """Integers Q (rows x inputs) with Q * scale close to `weight` where the inputs (`moment`) are.

    weight: (rows, inputs); moment: (inputs, inputs), or (rows, inputs, inputs) for depthwise;
    scale: (rows,). Each rounding error is spread over the row's later weights through the upper
    Cholesky factor of H^-1 (GPTQ); |Q| <= qmax, and with `pair_safe` every adjacent pair keeps
    |q_a| + |q_b| <= 128 as the export's grid promises. `damp` adds that fraction of the mean
    diagonal to H, which keeps the inverse stable for inputs that barely vary.
    """
    remaining = weight.double().clone()
    rows, inputs = remaining.shape
    h = moment.double() if moment.dim() == 3 else moment.double()[None]
    diagonal = torch.diagonal(h, dim1=-2, dim2=-1)
    h = h + torch.diag_embed(damp * diagonal.mean(-1, keepdim=True).expand_as(diagonal) + 1e-12)
    inverse_factor = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    inverse_factor = inverse_factor.expand(rows, inputs, inputs)
    scale = scale.double()
    q = torch.zeros_like(remaining)
    for i in range(inputs):
        limit = torch.full((rows,), float(qmax), dtype=torch.float64)
        if pair_safe and i % 2 == 1:
            limit = torch.minimum(limit, PAIR_LIMIT - q[:, i - 1].abs())
        q[:, i] = torch.clamp(torch.round(remaining[:, i] / scale), -limit, limit)
        error = (remaining[:, i] - q[:, i] * scale) / inverse_factor[:, i, i]
        remaining[:, i:] -= error[:, None] * inverse_factor[:, i, i:]
    return q


def round_weights_for_int8(
    model: DefectClassifier, calibration_grey: np.ndarray, cfg: ExportConfig
) -> tuple[DefectClassifier, dict[str, list[float]]]:
    """A copy of `model` whose quantized convolutions hold GPTQ-rounded weights, and their scales.

    Returns the copy and, per convolution (named as in `model.net`), the per-output-channel
    scales of the BN-folded weights, which `quantize_int8` must use so ONNX Runtime keeps exactly
    these integers. The first `cfg.float_convs` convolutions stay float and untouched.
    """
    rounded = copy.deepcopy(model).eval()
    pairs = conv_bn_pairs(rounded.net)[cfg.float_convs :]
    moments = input_second_moments(rounded, [conv for _, conv, _ in pairs], calibration_grey)
    scales = {}
    for name, conv, bn in track(pairs, description="int8 weight rounding (GPTQ)"):
        g = folded_scale(bn).double().reshape(-1, 1, 1, 1)
        folded = conv.weight.detach().double() * g
        depthwise = conv.groups > 1
        bound, qmax = weight_grid(folded, depthwise)
        scale = (bound / qmax).clamp_min(1e-12)
        q = gptq_integers(
            folded.reshape(len(folded), -1), moments[conv], scale, qmax,
            pair_safe=not depthwise,
        )  # fmt: skip
        unfolded = (q * scale[:, None]).reshape(folded.shape) / g
        unfolded = torch.where(
            g == 0, conv.weight.detach().double(), unfolded
        )  # a BN that zeroes its channel
        with torch.no_grad():
            conv.weight.copy_(unfolded.to(conv.weight.dtype))
        scales[name] = scale.tolist()
    return rounded, scales
