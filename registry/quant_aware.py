"""Quantization-aware distillation: fine-tune a copy of the classifier so its int8 export agrees with the fp32 model.

Why: after pair-safe weights the int8 model's remaining error is activation rounding, spread over
the whole network, and it flips a few images with large top-2 margins. Here a student copy of the
model runs with the rounding that ONNX Runtime will apply simulated in PyTorch (BN-folded
per-channel weights on the pair-safe / 8-bit grid, uint8 activations with the calibrated min/max
ranges) and learns, at a low learning rate, to reproduce the fp32 model's probabilities on the
training images (no labels: it imitates the fp32 model, it does not retrain it). Only the int8
file is made from the student; the fp32 export and every fp32 figure stay the original model's.

Off by default since stop 19 (ExportConfig.quant_aware_epochs = 0): GPTQ weight rounding
(registry/weight_rounding.py) halves the same error in a third of the time, and the two do not
stack (a distilled student fits its float weights to nearest rounding, which GPTQ then replaces).
The simulation stays the reference for where ONNX Runtime rounds (tests/registry/test_quant_aware.py).

The simulation mirrors this repository's export (registry/onnx_export.py): the first
`float_convs` convolutions stay float; every later convolution is followed by its BatchNorm
(timm's conv -> BN order), whose output is an activation ONNX Runtime quantizes, as is each
block's output after the residual add.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track
from torch import nn
from torch.nn.utils import parametrize

from registry.config import ExportConfig
from registry.onnx_export import weight_grid
from training.model import DefectClassifier


class FoldedWeightRounding(nn.Module):
    """Parametrization: round the BN-folded weight as the export will, then unfold it again.

    A convolution followed by BatchNorm (eval) computes bn(conv(x, w)); the export folds the BN
    scale g into the weight and quantizes w * g. Returning round(w * g) / g makes bn(conv(x, .))
    equal the folded, rounded convolution; gradients pass straight through the rounding.
    """

    def __init__(self, bn: nn.BatchNorm2d, depthwise: bool, weight_range: str) -> None:
        super().__init__()
        self.bn = [bn]  # a list, so the BN is not registered twice as a submodule
        self.depthwise, self.weight_range = depthwise, weight_range

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        g = folded_scale(self.bn[0]).reshape(-1, 1, 1, 1)
        folded = weight * g
        bound, qmax = weight_grid(folded, self.depthwise, self.weight_range)
        scale = (bound / qmax).detach().clamp_min(1e-12)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(folded, scale, zero, 0, -qmax, qmax) / g


def folded_scale(bn: nn.Module) -> torch.Tensor:
    """The per-channel factor the export folds from an eval-mode BatchNorm into the convolution before it."""
    return (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()


def conv_bn_pairs(net: nn.Module) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d]]:
    """Every convolution with the BatchNorm that follows it, in forward order."""
    pairs, pending = [], None
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            pending = (name, module)
        elif isinstance(module, nn.BatchNorm2d) and pending is not None:
            pairs.append((*pending, module))
            pending = None
    return pairs


def activation_ranges(
    model: DefectClassifier, modules: list[nn.Module], grey: np.ndarray
) -> list[tuple[float, float]]:
    """Min/max of each module's output over the calibration images, widened to include 0 (ONNX Runtime's MinMax)."""
    ranges = [[0.0, 0.0] for _ in modules]

    def recorder(index: int):
        def hook(_module, _inputs, output):
            ranges[index][0] = min(ranges[index][0], float(output.min()))
            ranges[index][1] = max(ranges[index][1], float(output.max()))

        return hook

    handles = [m.register_forward_hook(recorder(i)) for i, m in enumerate(modules)]
    with torch.inference_mode():
        for start in range(0, len(grey), 16):
            model(torch.from_numpy(grey[start : start + 16]))
    for handle in handles:
        handle.remove()
    return [(low, high) for low, high in ranges]


def activation_rounding_points(student: DefectClassifier, float_convs: int) -> list[nn.Module]:
    """The modules whose outputs ONNX Runtime rounds to uint8: each quantized convolution's BN
    (with its activation), the last float convolution's BN (the first quantized input), and
    each block (its output after the residual add), in forward order."""
    pairs = conv_bn_pairs(student.net)
    rounded, kept_float = pairs[float_convs:], pairs[:float_convs]
    points = [bn for _, _, bn in rounded] + [kept_float[-1][2]] * bool(kept_float)
    return points + [block for stage in student.net.blocks for block in stage]


def round_activations(
    student: DefectClassifier, modules: list[nn.Module], calibration_grey: np.ndarray
) -> None:
    """Round each module's output to uint8 with the min/max range it shows on the calibration
    images, as the static int8 export does (forward hooks on `student`)."""
    ranges = activation_ranges(student, modules, calibration_grey)
    for module, (low, high) in zip(modules, ranges, strict=True):
        scale = max(high - low, 1e-8) / 255
        zero_point = int(round(-low / scale))
        module.register_forward_hook(
            lambda _m, _i, out, s=scale, z=zero_point: torch.fake_quantize_per_tensor_affine(
                out, s, z, 0, 255
            )
        )


def simulated_int8(
    model: DefectClassifier, calibration_grey: np.ndarray, cfg: ExportConfig
) -> DefectClassifier:
    """A copy of `model` whose forward pass rounds weights and activations as the int8 export will."""
    student = copy.deepcopy(model).eval()
    round_activations(student, activation_rounding_points(student, cfg.float_convs), calibration_grey)
    for _, conv, bn in conv_bn_pairs(student.net)[cfg.float_convs :]:
        rounding = FoldedWeightRounding(bn, conv.groups > 1, cfg.weight_range)
        parametrize.register_parametrization(conv, "weight", rounding)
    return student


def plain_copy(model: DefectClassifier, student: DefectClassifier) -> DefectClassifier:
    """The student's learned weights in an ordinary model (no rounding, no hooks), ready for export."""
    out = copy.deepcopy(model).eval()
    state = {
        k.replace(".parametrizations.weight.original", ".weight"): v for k, v in student.state_dict().items()
    }
    out.load_state_dict(state)
    return out


def distill_for_int8(
    model: DefectClassifier, train_grey: np.ndarray, calibration_grey: np.ndarray, cfg: ExportConfig
) -> DefectClassifier:
    """Fine-tune a simulated-int8 copy to match `model`'s probabilities; return it as a plain model."""
    teacher = model.eval()
    student = simulated_int8(model, calibration_grey, cfg)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=cfg.quant_aware_lr)
    rng = np.random.default_rng(cfg.seed)
    batches = max(1, len(train_grey) // 16)
    for epoch in range(cfg.quant_aware_epochs):
        order = np.array_split(rng.permutation(len(train_grey)), batches)
        for index in track(
            order, description=f"int8 distillation, epoch {epoch + 1}/{cfg.quant_aware_epochs}"
        ):
            x = torch.from_numpy(train_grey[np.sort(index)])
            with torch.no_grad():
                target = teacher(x).softmax(1)
            loss = F.kl_div(student(x).log_softmax(1), target, reduction="batchmean")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return plain_copy(model, student)
