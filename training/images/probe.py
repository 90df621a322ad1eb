"""The obvious baseline beside every fine-tune: a linear probe on the frozen pretrained backbone.

Why: on a new line a fine-tune can end below what a logistic regression on ImageNet features gets
(issue 26: test 0.74 vs 0.78). Every run fits the probe on the same training part and scores both on
the same validation part; the one that wins there (the fine-tune on a tie) is the candidate that is
evaluated, exported and registered, and the choice goes into the card. The probe ships as the same
network: the pretrained backbone with the logistic regression folded into its classifier layer, so
export, int8, devices and monitoring need nothing new.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from inputs.images import channels_first
from training.images.checkpoint import save_checkpoint
from training.images.config import FitConfig, ModelConfig
from training.images.data import TrainingData, colour_of, split_indices, training_data
from training.images.device import resolve_device
from training.images.embeddings import linear_probe
from training.images.evaluate import predict_proba
from training.images.fit import FitResult
from training.images.metrics import macro_f1
from training.images.model import DefectClassifier, make_spec

FINE_TUNE, PROBE = "fine-tune", "linear probe"
NEVER = -30.0  # logit bias of a class the training part lacks: the probe never predicts it


@dataclass(frozen=True)
class Candidate:
    """The model this run evaluates, exports and registers, and why."""

    name: str  # FINE_TUNE or PROBE
    checkpoint: Path
    val_macro_f1: dict[str, float]  # both candidates', on the same validation part

    def words(self) -> str:
        scores = ", ".join(f"{name} {score:.3f}" for name, score in self.val_macro_f1.items())
        return f"{self.name} (validation macro-F1: {scores})"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self) | {"checkpoint": str(self.checkpoint)}, indent=2))

    @classmethod
    def load(cls, path: Path) -> Candidate:
        data = json.loads(path.read_text())
        return cls(data["name"], Path(data["checkpoint"]), data["val_macro_f1"])


@torch.inference_mode()
def pooled_features(model: DefectClassifier, images: np.ndarray, device, batch_size: int = 64) -> np.ndarray:
    """What the classifier layer reads: the globally average-pooled last feature map (N, F)."""
    out = []
    for start in range(0, len(images), batch_size):
        pixels = torch.from_numpy(channels_first(images[start : start + batch_size])).to(device)
        out.append(model.logits_and_pooled(pixels)[1].float().cpu().numpy())
    return np.concatenate(out)


def fold_probe(layer: torch.nn.Linear, probe, num_classes: int) -> None:
    """Write scaler + logistic regression into `layer`, so layer(features) gives the probe's logits.

    Standardising is affine, so it folds into the weights: W (x - m) / s + b = (W / s) x + (b - W m / s).
    A two-class regression has one row (class 1 against class 0); class 0 gets the zero row, which
    gives the same softmax."""
    scaler, regression = probe[0], probe[-1]
    coef = regression.coef_ / scaler.scale_
    intercept = regression.intercept_ - coef @ scaler.mean_
    if len(regression.classes_) == 2:
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
    weight = np.zeros((num_classes, coef.shape[1]))
    bias = np.full(num_classes, NEVER)
    weight[regression.classes_], bias[regression.classes_] = coef, intercept
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        layer.bias.copy_(torch.from_numpy(bias))


def probe_classifier(
    backbone: str, data: TrainingData, train_idx: np.ndarray, image_size: int, device, seed: int = 0
) -> DefectClassifier:
    """The pretrained backbone, frozen, with a linear probe fitted on the training part as its head."""
    colour = data.images.ndim == 4  # (N, S, S, 3): the line's images keep their colour
    spec = make_spec(backbone, list(data.classes), image_size, dropout=0.0, aux_seg=False, colour=colour)
    model = DefectClassifier(spec, pretrained=True).to(device).eval()
    features = pooled_features(model, data.images[train_idx], device)
    probe = linear_probe(seed=seed).fit(features, data.labels[train_idx])
    fold_probe(model.net.classifier, probe, len(data.classes))
    return model


def choose_candidate(
    manifest: pd.DataFrame,
    classes: list[str],
    model_cfg: ModelConfig,
    fit_cfg: FitConfig,
    fine_tune: FitResult,
    out_dir: Path,
    cache_dir: Path | None = None,
) -> Candidate:
    """Fit the probe on the fine-tune's training part, compare on its validation part, keep the winner."""
    colour = colour_of(model_cfg.colour, manifest)
    data = training_data(manifest, classes, model_cfg.image_size, cache_dir, colour)  # the fine-tune's pixels
    parts, device = split_indices(manifest), resolve_device(fit_cfg.device)
    probe = probe_classifier(
        str(model_cfg.backbone), data, parts["train"], model_cfg.image_size, device, fit_cfg.seed
    )
    predicted = predict_proba(probe, data.images[parts["val"]], device, fit_cfg.batch_size).argmax(1)
    scores = {
        FINE_TUNE: fine_tune.best_val_macro_f1,
        PROBE: macro_f1(data.labels[parts["val"]], predicted, len(classes)),
    }
    if scores[PROBE] > scores[FINE_TUNE]:
        path = save_checkpoint(out_dir / "probe.pt", probe.cpu(), epoch=0, candidate=PROBE)
        candidate = Candidate(PROBE, path, scores)
    else:
        candidate = Candidate(FINE_TUNE, fine_tune.best_checkpoint, scores)
    out_dir.mkdir(parents=True, exist_ok=True)
    candidate.save(out_dir / "candidate.json")
    return candidate
