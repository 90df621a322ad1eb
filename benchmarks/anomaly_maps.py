"""Does the anomaly map show where the defect is? The shipped PatchCore maps against the magnetic tiles'
defect masks (issue 26: "an anomaly map that shows where the defect is").

  python -m benchmarks.anomaly_maps

Protocol: the tile-grouped 5-fold of benchmarks.line_models (grouped_kfold, seed 0), Lite0, 224 px, PatchCore
defaults (training.images.patchcore); the bank from each fold's good training images; on its test part:
- pixel AUROC: every pixel of every test image (good images: all pixels normal), map value vs mask;
- hotspot on the defect: the share of test defect images whose map maximum (what a device reports as
  `hotspot`) lies inside the defect's mask, dilated by 8 px (a patch is 16 px), and what chance gives
  (the masks' dilated area over the image);
- per-image AUROC from the same maps (the image score is the map's source's maximum), as a cross-check.
Writes benchmarks/results/anomaly_maps.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_dilation
from sklearn.metrics import roc_auc_score

from core.settings import apply_offline_defaults
from data_checks.images.manifest import load_dataset
from training.images.config import PatchCoreConfig
from training.images.data import training_data
from training.images.patchcore import (
    PatchCoreScorer,
    PatchFeatures,
    as_patches,
    embed,
    fit_memory_bank,
    nearest_distance,
)
from training.images.split import grouped_kfold

CACHE, OUT, SIZE, GOOD = (
    Path(".shopfloor/cache"),
    Path("benchmarks/results/anomaly_maps.json"),
    224,
    "MT_Free",
)
DILATE_PX = 8


@torch.inference_mode()
def fold_maps(scorer: PatchCoreScorer, embedding: torch.Tensor, rows: np.ndarray) -> np.ndarray:
    """Anomaly maps (n, S, S) of `rows` from their cached embeddings, as the shipped scorer makes them."""
    maps = []
    for i in range(0, len(rows), 16):
        e = embedding[rows[i : i + 16]]
        n, d, h, w = e.shape
        patch = nearest_distance(e.permute(0, 2, 3, 1).reshape(n, h * w, d), scorer.bank, scorer.bank_sq)
        upsampled = F.interpolate(patch.reshape(n, 1, h, w), size=(SIZE, SIZE), mode="bilinear")
        maps.append(scorer.smooth(upsampled)[:, 0].numpy())
    return np.concatenate(maps)


def hotspot_hits(maps: np.ndarray, masks: np.ndarray) -> tuple[float, float, int]:
    """(share of maps whose maximum lies in the dilated mask, mean dilated-mask area share, images judged)."""
    structure = np.ones((2 * DILATE_PX + 1, 2 * DILATE_PX + 1), bool)
    hits, areas = [], []
    for heat, mask in zip(maps, masks, strict=True):
        region = binary_dilation(mask > 0, structure)
        if not region.any():
            continue  # the defect vanished in the resize
        y, x = np.unravel_index(np.argmax(heat), heat.shape)
        hits.append(bool(region[y, x]))
        areas.append(float(region.mean()))
    return float(np.mean(hits)), float(np.mean(areas)), len(hits)


def main() -> None:
    apply_offline_defaults()
    torch.set_num_threads(os.cpu_count() or 1)
    manifest = load_dataset(Path("data/magnetic_tiles")).manifest
    classes = sorted(manifest["label"].unique())
    data = training_data(manifest, classes, SIZE, CACHE)
    good = (manifest["label"] == GOOD).to_numpy()
    splits = grouped_kfold(data.labels, manifest["group"].to_numpy(), 5, 0.15, seed=0)
    cfg = PatchCoreConfig(image_size=SIZE)
    features = PatchFeatures(cfg)
    started = time.perf_counter()
    embedding = embed(features, data.images)
    folds = []
    for k, split in enumerate(splits):
        bank = fit_memory_bank(as_patches(embedding[split.train[good[split.train]]]), cfg.coreset_fraction, cfg.seed,
                               cfg.projection_dims)  # fmt: skip
        scorer = PatchCoreScorer(features, bank)
        test = split.test[data.has_mask[split.test]]
        maps = fold_maps(scorer, embedding, test)
        truth = data.masks[test] > 0
        defects = ~good[test]
        hit, area, judged = hotspot_hits(maps[defects], data.masks[test][defects])
        folds.append({
            "pixel_auroc": float(roc_auc_score(truth.ravel(), maps.ravel())),
            "hotspot_on_defect": hit, "hotspot_by_chance": area, "defect_images_judged": judged,
            "image_auroc_from_maps": float(roc_auc_score(defects, maps.reshape(len(maps), -1).max(1))),
        })  # fmt: skip
        print(f"fold {k}: " + ", ".join(f"{key} {value:.3f}" for key, value in folds[-1].items()))
    summary = {
        key: [float(np.mean([f[key] for f in folds])), float(np.std([f[key] for f in folds]))]
        for key in folds[0]
    }
    result = {"protocol": "tile-grouped 5-fold (seed 0), Lite0, 224 px, PatchCore defaults", "dilate_px": DILATE_PX,
              "summary": summary, "folds": folds, "minutes": (time.perf_counter() - started) / 60}  # fmt: skip
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
