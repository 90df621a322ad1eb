"""Baseline: frozen ImageNet EfficientNet-Lite0 features + logistic regression, on the same folds.

  python -m benchmarks.linear_probe

Prints and saves macro-F1 on tile-grouped 5-fold CV (the honest number, same folds as
`benchmarks.defect_protocols kfold`) and on a random 5-fold split (a leak: views of one tile on
both sides), to show how much a random split flatters a model. Reference (issue 4): 0.92 random,
0.54 grouped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from core.settings import apply_offline_defaults
from data_checks.images.manifest import load_dataset
from data_checks.images.properties import compute_image_properties
from training.images.embeddings import cached_embeddings, linear_probe
from training.images.metrics import macro_f1
from training.images.split import grouped_kfold

DATA, CACHE = Path("data/magnetic_tiles"), Path(".shopfloor/cache")


def probe_scores(
    features: np.ndarray, labels: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]
) -> list[float]:
    scores = []
    for train, test in folds:
        probe = linear_probe().fit(features[train], labels[train])
        scores.append(macro_f1(labels[test], probe.predict(features[test]), labels.max() + 1))
    return scores


def main() -> None:
    apply_offline_defaults()
    manifest = load_dataset(DATA).manifest
    classes = sorted(manifest["label"].unique())
    labels = np.array([classes.index(c) for c in manifest["label"]])
    md5 = compute_image_properties(manifest["path"].tolist(), CACHE)["md5"].tolist()
    features = cached_embeddings(manifest["path"].tolist(), md5, CACHE)
    grouped = [
        (np.concatenate([s.train, s.val]), s.test)
        for s in grouped_kfold(labels, manifest["group"].to_numpy(), 5, 0.15, seed=0)
    ]
    random = list(StratifiedKFold(5, shuffle=True, random_state=0).split(features, labels))
    result = {
        "grouped_5fold": probe_scores(features, labels, grouped),
        "random_5fold_LEAKY": probe_scores(features, labels, random),
    }
    for name, scores in result.items():
        print(
            f"{name}: macro-F1 {np.mean(scores):.3f} +- {np.std(scores):.3f}  folds {np.round(scores, 3).tolist()}"
        )
    out = Path("benchmarks/results/linear_probe.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
