"""Losses for imbalanced classes: weighted cross-entropy and focal loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.images.config import FitConfig, Imbalance


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Weight each class by N / (C * count): a class 30x rarer counts 30x more, mean weight 1."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = len(labels) / (num_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


class FocalLoss(nn.Module):
    """Lin et al. 2017: (1 - p_t)^gamma scales down examples the model already gets right."""

    def __init__(self, weight: torch.Tensor | None, gamma: float) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        log_pt = log_p.gather(1, target[:, None]).squeeze(1)
        loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        if self.weight is not None:
            loss = loss * self.weight[target]
            return loss.sum() / self.weight[target].sum()
        return loss.mean()


def classification_loss(cfg: FitConfig, train_labels: np.ndarray, num_classes: int) -> nn.Module:
    """The loss for `cfg.imbalance`. The balanced sampler already evens classes, so it uses plain CE."""
    weights = inverse_frequency_weights(train_labels, num_classes)
    if cfg.imbalance == Imbalance.WEIGHTED_CE:
        return nn.CrossEntropyLoss(weight=weights)
    if cfg.imbalance == Imbalance.FOCAL:
        return FocalLoss(weights, cfg.focal_gamma)
    return nn.CrossEntropyLoss()
