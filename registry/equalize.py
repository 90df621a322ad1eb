"""Residual-stream equalization: give quiet channels more of the uint8 grid before int8 export.

Why: ONNX Runtime quantizes each activation tensor with one scale (per-tensor uint8). The
tensors that cost the int8 file most fidelity here are the residual streams between blocks
(linear, no ReLU6: ranges of -57..50 on the demo model): rounding blocks.1.0's output alone
gives a mean probability error of 0.0009 on validation (the whole int8 file: 0.0056). Their
range is set by a few loud channels, so a quiet channel gets a handful of the 256 levels.
Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization") multiplies such a
channel by s_c where it is made and divides by s_c where it is read, which leaves the float
function unchanged; the stream is linear, so any s_c > 0 is exact (a ReLU6 would clip). How far
to lift quiet channels trades activation rounding for weight rounding in the convolutions that
read the stream (`stream_scales`, SmoothQuant's migration strength `alpha`).

Measured on the demo model's validation images (benchmarks/int8_settings.py): mean |p_int8 -
p_fp32| 0.0056 -> 0.0044 at alpha 0.5 (0.0047 at 0.25, 0.0043 at 0.75), same graph and latency.
It does not stack with the quantization-aware distillation (registry/quant_aware.py):
distilling the equalized copy gives 0.0049 (0.0039 at a third of the learning rate, 0.0041 with
Adam's steps rescaled to the original weights' units), equalizing the distilled copy 0.0043,
against 0.0037 for distillation alone. Nor clearly with the GPTQ weight rounding that ships now
(registry/weight_rounding.py): 0.0026 without, 0.0028 / 0.0025 at alpha 0.5 / 0.75, inside the
spread of calibration seeds. So it is off by default (ExportConfig.equalize_alpha).
Lifting quiet ReLU6 channels the same way was tried and left out: a ReLU6 channel can only be
lifted as far as its calibrated peak allows, validation images beyond it clip, and it made the
error worse (0.0044 -> 0.0048).

The equalized copy is only the int8 file's source; `equalize_for_int8` checks that it computes
what the original does.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from data_checks.errors import ExportError
from registry.quant_aware import folded_scale
from training.model import MASK_STAGE, DefectClassifier


def _stream_bn(block: nn.Module) -> nn.Module:
    """The BatchNorm whose (linear) output a block adds to, or starts, its stage's residual stream."""
    return block.bn3 if hasattr(block, "conv_pwl") else block.bn2


def _first_conv(block: nn.Module) -> tuple[nn.Conv2d, nn.Module]:
    """The convolution that reads a block's input, with the BatchNorm after it."""
    return (block.conv_pw, block.bn1) if hasattr(block, "conv_pwl") else (block.conv_dw, block.bn1)


def stream_consumers(model: DefectClassifier, stage_index: int) -> list[tuple[nn.Conv2d, nn.Module | None]]:
    """Every convolution that reads stage `stage_index`'s residual stream, with its BatchNorm (None: float head)."""
    net = model.net
    stage = net.blocks[stage_index]
    readers = [_first_conv(block) for block in stage[1:]]  # the skip blocks' expansions
    if stage_index + 1 < len(net.blocks):
        readers.append(_first_conv(net.blocks[stage_index + 1][0]))
    else:
        readers.append((net.conv_head, net.bn2))
    if model.mask_head is not None and stage_index == MASK_STAGE:
        readers.append((model.mask_head, None))
    return readers


def stream_tensors(stage: nn.Sequential) -> list[nn.Module]:
    """The modules whose outputs carry a stage's residual stream: each block's output and each skip branch."""
    return list(stage) + [_stream_bn(block) for block in stage[1:]]


def stream_peaks(model: DefectClassifier, grey: np.ndarray) -> list[torch.Tensor]:
    """Per stage, per channel: the largest |value| its residual stream takes on the calibration images.

    One pass for all stages: rescaling one stage's stream leaves every other stage's unchanged.
    """
    stages = list(model.net.blocks)
    peaks: list[torch.Tensor | None] = [None] * len(stages)

    def recorder(index: int):
        def hook(_module, _inputs, output):
            peak = output.detach().abs().amax(dim=(0, 2, 3))
            peaks[index] = peak if peaks[index] is None else torch.maximum(peaks[index], peak)

        return hook

    handles = [
        m.register_forward_hook(recorder(i)) for i, stage in enumerate(stages) for m in stream_tensors(stage)
    ]
    try:
        with torch.inference_mode():
            for start in range(0, len(grey), 16):
                model(torch.from_numpy(grey[start : start + 16]))
    finally:
        for handle in handles:
            handle.remove()
    return peaks


def _column_share(conv: nn.Conv2d, bn: nn.Module) -> torch.Tensor:
    """Per input channel, the largest share of an output channel's weight grid its (BN-folded) weights use."""
    if conv.groups > 1:  # depthwise: one input channel per output channel, its own grid
        return torch.ones(conv.weight.shape[0])
    g = folded_scale(bn).reshape(-1, 1, 1, 1)
    folded = (conv.weight * g).abs()
    share = folded.amax(dim=(2, 3)) / folded.amax(dim=(1, 2, 3)).clamp_min(1e-12).unsqueeze(1)
    return share.amax(0)


def stream_scales(
    activation_peaks: torch.Tensor, weight_share: torch.Tensor, alpha: float, max_scale: float
) -> torch.Tensor:
    """Per channel of a residual stream: s_c = (a_max / a_c)^alpha * (w_c / w_max)^(1 - alpha), clamped.

    alpha = 1 equalizes the activation ranges (every channel as loud as the loudest); lower alphas
    leave more of each consumer column's weight grid in use (SmoothQuant's migration strength).
    """
    a = activation_peaks.clamp_min(1e-12)
    w = weight_share.clamp_min(1e-12)
    scales = (a.max() / a) ** alpha * (w / w.max()) ** (1 - alpha)
    scales = torch.where(activation_peaks > 0, scales, torch.ones_like(scales))
    return scales.clamp(1 / max_scale, max_scale)


def equalize_streams(
    model: DefectClassifier, grey: np.ndarray, alpha: float, max_scale: float = 16.0
) -> None:
    """Rescale each stage's residual stream channel by channel, in place; the float function is unchanged.

    A stream channel c is multiplied by s_c where it is made (the stage's first block's last
    BatchNorm, and every skip block's last BatchNorm, whose branch is added to it) and divided out
    where it is read (the input columns of every convolution that reads the stream).
    """
    all_peaks = stream_peaks(model, grey)
    with torch.no_grad():
        for index, (stage, peaks) in enumerate(zip(model.net.blocks, all_peaks, strict=True)):
            makers = [_stream_bn(block) for block in stage]
            readers = stream_consumers(model, index)
            share = torch.stack([_column_share(c, bn) for c, bn in readers if bn is not None]).amax(0)
            scales = stream_scales(peaks, share, alpha, max_scale)
            for bn in makers:
                bn.weight.mul_(scales)
                bn.bias.mul_(scales)
            for conv, _bn in readers:
                if conv.groups > 1:
                    conv.weight.div_(scales.view(-1, 1, 1, 1))
                else:
                    conv.weight.div_(scales.view(1, -1, 1, 1))


def equalize_for_int8(
    model: DefectClassifier, calibration_grey: np.ndarray, alpha: float, max_scale: float = 16.0
) -> DefectClassifier:
    """A copy of `model` whose residual streams are equalized for per-tensor uint8 activations."""
    out = copy.deepcopy(model).eval()
    equalize_streams(out, calibration_grey, alpha, max_scale)
    _check_same_function(model, out, calibration_grey)
    return out


def _check_same_function(model: DefectClassifier, equalized: DefectClassifier, grey: np.ndarray) -> None:
    """Raise ExportError when equalization changed what the model computes on these images."""
    sample = torch.from_numpy(grey[:32])
    with torch.inference_mode():
        before, after = model.eval()(sample).softmax(1), equalized(sample).softmax(1)
    gap = float((before - after).abs().max())
    if gap > 1e-4:
        raise ExportError(f"stream equalization changed the model's probabilities by {gap:.2e} (> 1e-4)")
