"""Frozen-backbone embeddings and out-of-fold class probabilities from them.

Used where a cheap, honest second opinion on the labels is needed: the mislabel finder (confident
learning needs probabilities from a model that never saw the item) and the linear-probe baseline.
Embeddings are cached per file content, so repeated checks cost nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from inputs.images import PREPROCESSING_VERSION
from training.images.backbones import create_backbone
from training.images.pixels import load_pixels

EMBED_SIZE = 224


@torch.inference_mode()
def embed_images(
    images: np.ndarray, backbone: str = "efficientnet_lite0", batch_size: int = 64
) -> np.ndarray:
    """Global-average-pooled backbone features (N, 1280) of uint8 grey images (N, S, S)."""
    from rich.progress import track

    net = create_backbone(backbone).eval().to(memory_format=torch.channels_last)
    out = []
    for start in track(range(0, len(images), batch_size), description="Embedding images", transient=True):
        x = torch.from_numpy(images[start : start + batch_size]).float()[:, None] / 255.0  # (B, 1, S, S)
        x = ((x - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)
        out.append(net.forward_head(net.forward_features(x), pre_logits=True).numpy())
    return np.concatenate(out)


def cached_embeddings(
    paths: list[str], md5s: list[str], cache_dir: Path | None, backbone: str = "efficientnet_lite0"
) -> np.ndarray:
    """Embeddings of `paths`, keyed by file content (md5) so renames and moves keep the cache."""
    key = hashlib.sha256(("|".join(md5s) + backbone + PREPROCESSING_VERSION).encode()).hexdigest()[:16]
    cache = cache_dir / f"embeddings_{backbone}_{key}.npy" if cache_dir else None
    if cache and cache.exists():
        return np.load(cache)
    pixels = load_pixels(paths, [None] * len(paths), EMBED_SIZE, cache_dir)
    features = embed_images(pixels.images, backbone)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, features)
    return features


def linear_probe(c: float = 0.5, seed: int = 0):
    """Standardised features into a class-balanced logistic regression."""
    return make_pipeline(
        StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced", random_state=seed)
    )


def out_of_fold_proba(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each item's class probabilities from a probe trained on the other folds.

    The folds are deliberately *not* grouped by part: for finding label errors, a tile's other
    views in the training folds carry its (usually correct) label, which is exactly the evidence
    that exposes one wrongly labelled view. Grouped folds are for measuring generalisation.
    """
    min_count = np.bincount(labels).min()
    splitter = StratifiedKFold(n_splits=min(folds, max(2, min_count)), shuffle=True, random_state=seed)
    return cross_val_predict(linear_probe(seed=seed), features, labels, cv=splitter, method="predict_proba")
