"""Stage functions of the image anomaly job: fit PatchCore (training.images.patchcore) on the good parts
of the training part, set the threshold on the good parts of the validation part, measure on the test part.

Only good images train and only good images set the threshold, so a line with no labelled defects yet
gets a model; labelled defects, where there are any, are used to *measure* (AUROC, defect recall at the
threshold), never to fit or to choose. The parts are the same grouped split (and frozen test set) the
line's classifier uses, so the two models' figures stand side by side.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.errors import DataError
from inputs.images import channels_first
from training.images.patchcore import PatchCoreConfig, PatchCoreScorer, fit, threshold_for
from training.images.pixels import load_pixels


@dataclass(frozen=True)
class AnomalyImages:
    """Pixels and labels of every manifest row, indexed like the manifest."""

    images: np.ndarray  # (N, S, S) uint8 grey, or (N, S, S, 3) RGB
    good: np.ndarray  # (N,) bool: the row's label is the good class
    split: np.ndarray  # (N,) "train" | "val" | "test"
    paths: list[str]
    labels: list[str]
    groups: np.ndarray  # (N,) the physical part each image shows

    def part(self, name: str, good: bool | None = None) -> np.ndarray:
        """Row indices of split part `name`; only good (True) or only defect (False) rows when asked."""
        rows = self.split == name
        if good is not None:
            rows &= self.good == good
        return np.flatnonzero(rows)


def anomaly_images(manifest: pd.DataFrame, good_class: str, size: int, cache_dir: Path | None,
                   colour: bool = False) -> AnomalyImages:  # fmt: skip
    pixels = load_pixels(manifest["path"].tolist(), [None] * len(manifest), size, cache_dir, colour)
    return AnomalyImages(
        pixels.images, manifest["label"].to_numpy() == good_class, manifest["split"].to_numpy(),
        manifest["path"].tolist(), manifest["label"].tolist(), manifest["group"].to_numpy(),
    )  # fmt: skip


@dataclass(frozen=True)
class PartFigures:
    """One part's figures at the shipped threshold; AUROC and recall are None without defects in it."""

    good: int
    defects: int
    false_reject_rate: float
    defect_recall: float | None
    auroc: float | None

    def flat(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items() if v is not None}


def part_figures(scores: np.ndarray, good: np.ndarray, threshold: float) -> PartFigures:
    """A part is rejected above `threshold` (threshold_for keeps ties): false rejects among the good,
    recall among the defects, AUROC of defect vs good."""
    rejected = scores > threshold
    defects = int((~good).sum())
    auroc = None
    if defects and good.any():
        from sklearn.metrics import roc_auc_score

        auroc = float(roc_auc_score(~good, scores))
    return PartFigures(
        int(good.sum()), defects, float(rejected[good].mean()) if good.any() else math.nan,
        float(rejected[~good].mean()) if defects else None, auroc,
    )  # fmt: skip


@torch.inference_mode()
def score_images(scorer: PatchCoreScorer, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """Image scores (N,) of uint8 images (N, S, S[, 3]), in batches (the maps are not kept)."""
    scores = [
        scorer(torch.from_numpy(channels_first(images[i : i + batch])))[0].numpy()
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)


@torch.inference_mode()
def anomaly_maps(scorer: PatchCoreScorer, images: np.ndarray) -> np.ndarray:
    """Anomaly maps (N, S, S) of a few images (the plotted ones)."""
    return scorer(torch.from_numpy(channels_first(images)))[1][:, 0].numpy()


@dataclass(frozen=True)
class FittedAnomalyModel:
    scorer: PatchCoreScorer
    threshold: float
    bank_size: int
    train_good: int
    fit_seconds: float


def fit_image_anomaly(cfg: PatchCoreConfig, data: AnomalyImages) -> FittedAnomalyModel:
    """The memory bank from the training part's good images; the threshold from the validation part's
    good images, for `cfg.target_false_reject_rate`."""
    train, val = data.part("train", good=True), data.part("val", good=True)
    for name, rows in (("training", train), ("validation", val)):
        if not len(rows):
            raise DataError(
                f"the {name} part holds no good image: an anomaly model learns good parts only; add good "
                "images (more parts), or name the good class with --good CLASS"
            )
    started = time.perf_counter()
    scorer = fit(cfg, data.images[train])
    threshold = threshold_for(score_images(scorer, data.images[val]), cfg.target_false_reject_rate)
    return FittedAnomalyModel(scorer, threshold, len(scorer.bank), len(train), time.perf_counter() - started)


@dataclass(frozen=True)
class AnomalyEvaluation:
    val: PartFigures
    test: PartFigures
    test_rows: np.ndarray  # manifest rows of the test part
    test_scores: np.ndarray  # their image scores

    def flat(self) -> dict[str, float]:
        return self.val.flat("val_") | self.test.flat("test_")


def evaluate_image_anomaly(fitted: FittedAnomalyModel, data: AnomalyImages) -> AnomalyEvaluation:
    """Figures of the validation and test parts at the fitted threshold."""
    parts = {}
    for name in ("val", "test"):
        rows = data.part(name)
        scores = score_images(fitted.scorer, data.images[rows])
        parts[name] = (rows, scores, part_figures(scores, data.good[rows], fitted.threshold))
    rows, scores, test = parts["test"]
    return AnomalyEvaluation(parts["val"][2], test, rows, scores)
