"""The deployable defect classifier: raw pixels in (grey, or RGB for a colour line), class logits out.

Normalisation happens inside the module, so the ONNX export and every serving path inherit it
and nobody keeps a second copy of the constants. The optional mask head is trained on
the defect masks (an auxiliary loss that tells the network where the defect is). Export ignores
it, unless `mask_pooling` is on: then the classifier also reads the features pooled where the
mask head points, so the head is part of the deployed model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.images.backbones import backbone_spec, create_backbone

MASK_STAGE = 4  # EfficientNet stage whose output (stride 16) feeds the mask head


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the module and feed it: saved inside every checkpoint."""

    backbone: str
    classes: tuple[str, ...]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dropout: float = 0.2
    aux_seg: bool = False
    mask_pooling: bool = False  # classify [average features, features pooled by the mask head's attention]
    input_range: str = "grey values 0..255, float32, shape (N, 1, S, S)"
    channels: int = 1  # 1: grey (repeated to the backbone's three inside); 3: RGB

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        data = dict(data)
        for key in ("classes", "mean", "std"):
            data[key] = tuple(data[key])
        return cls(**data)


def make_spec(
    backbone: str,
    classes: list[str],
    image_size: int,
    dropout: float,
    aux_seg: bool,
    mask_pooling: bool = False,
    colour: bool = False,
) -> ModelSpec:
    norm = backbone_spec(backbone)
    aux_seg = aux_seg or mask_pooling  # pooling by the mask needs the mask head
    channels = 3 if colour else 1
    values = "RGB" if colour else "grey"
    return ModelSpec(
        backbone, tuple(classes), image_size, norm.mean, norm.std, dropout, aux_seg, mask_pooling,
        f"{values} values 0..255, float32, shape (N, {channels}, S, S)", channels,
    )  # fmt: skip


class DefectClassifier(nn.Module):
    def __init__(self, spec: ModelSpec, pretrained: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.net = create_backbone(spec.backbone, num_classes=len(spec.classes), pretrained=pretrained)
        self.net.drop_rate = spec.dropout
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))
        mid_channels = self.net.blocks[MASK_STAGE][-1].conv_pwl.out_channels
        self.mask_head = nn.Conv2d(mid_channels, 1, kernel_size=1) if spec.aux_seg else None
        if spec.mask_pooling:  # twice the features: the global average and the mask-attended pool
            self.net.classifier = nn.Linear(2 * self.net.num_features, len(spec.classes))

    def normalise(self, grey: torch.Tensor) -> torch.Tensor:
        # (N, 1, S, S) grey or (N, 3, S, S) RGB in 0..255 -> (N, 3, S, S) scaled as the backbone was trained
        x = grey / 255.0
        return (x.expand(-1, 3, -1, -1) - self.mean) / self.std

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        if self.spec.mask_pooling:
            return self.forward_with_mask(grey)[0]
        return self.net(self.normalise(grey))  # (N, C) logits

    def forward_with_mask(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and, with the mask head, defect-mask logits at stride 16: (N, 1, S/16, S/16)."""
        if self.mask_head is None:
            return self(grey), None
        features, mask_logits = self._trunk(grey)
        return self._head(features, mask_logits), mask_logits

    def logits_and_pooled(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the globally average-pooled last feature map (N, num_features): what the
        exported model's embedding output projects (drift monitoring compares embeddings)."""
        features, mask_logits = self._trunk(grey)
        return self._head(features, mask_logits), features.mean(dim=(2, 3))

    def _trunk(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The last feature map (N, F, S/32, S/32) and, with the mask head, its logits at stride 16."""
        net = self.net
        if self.mask_head is None:
            return net.forward_features(self.normalise(grey)), None
        x = net.bn1(net.conv_stem(self.normalise(grey)))
        mask_logits = None
        for index, stage in enumerate(net.blocks):
            x = stage(x)
            if index == MASK_STAGE:
                mask_logits = self.mask_head(x)
        return net.bn2(net.conv_head(x)), mask_logits

    def _head(self, features: torch.Tensor, mask_logits: torch.Tensor | None) -> torch.Tensor:
        if not self.spec.mask_pooling:
            return self.net.forward_head(features)
        return self._mask_pooled_head(features, mask_logits)

    def _mask_pooled_head(self, features: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """Why: a defect covers a few cells of the 7x7 grid, so a global average mostly describes the
        tile's surface. Pooling again with a softmax over the mask head's logits describes the spot
        the network thinks is defective; both pools go to the linear classifier."""
        n, c = features.shape[:2]
        attention = F.adaptive_avg_pool2d(mask_logits, features.shape[-2:]).flatten(1).softmax(dim=1)
        attended = torch.bmm(features.flatten(2), attention.unsqueeze(2)).view(n, c)
        pooled = torch.cat([features.mean(dim=(2, 3)), attended], dim=1)
        pooled = F.dropout(pooled, p=self.net.drop_rate, training=self.training)
        return self.net.classifier(pooled)

    def head_parameters(self) -> list[nn.Parameter]:
        params = list(self.net.get_classifier().parameters())
        return params + (list(self.mask_head.parameters()) if self.mask_head is not None else [])

    def backbone_parameters(self) -> list[nn.Parameter]:
        head = {id(p) for p in self.head_parameters()}
        return [p for p in self.parameters() if id(p) not in head]


class ProbabilityModel(nn.Module):
    """What ships: the classifier followed by softmax, so edge code needs no maths of its own."""

    def __init__(self, classifier: DefectClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.classifier(grey), dim=1)  # (N, C) probabilities
