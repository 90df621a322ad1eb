"""Data checks on all 1344 magnetic tiles: time once features are cached, part-group recovery from
pixels (adjusted Rand index against the frame-number groups), and the mislabel finder under 5 %
random label flips (several seeds).

  python -m benchmarks.data_checks_bench

Works on a temporary copy of the data (the gate moves files to quarantine). The baseline for
the timing is the same gate with a cold cache (decoding every file), run first in this process.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from core.settings import apply_offline_defaults
from data_checks.images.config import ChecksConfig
from data_checks.images.duplicates import find_duplicates
from data_checks.images.gate import check_image_dataset
from data_checks.images.manifest import FRAME_NAME, frame_cluster_groups, load_dataset
from data_checks.images.mislabels import rank_label_issues
from data_checks.images.properties import compute_image_properties
from training.images.embeddings import cached_embeddings, out_of_fold_proba

DATA = Path("data/magnetic_tiles")


def timed_gate(data: Path, cache: Path, out: Path) -> tuple[float, object]:
    cfg = ChecksConfig(cache_dir=cache, quarantine_dir=out / "quarantine")
    started = time.perf_counter()
    checked = check_image_dataset(cfg, data, out / "checks")
    return time.perf_counter() - started, checked


def mislabel_trials(manifest, features, seeds: int = 5) -> list[dict]:
    classes = sorted(manifest["label"].unique())
    truth = np.array([classes.index(c) for c in manifest["label"]])
    paths = manifest["path"].to_numpy()
    trials = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        flipped = rng.choice(len(truth), size=round(0.05 * len(truth)), replace=False)
        noisy = truth.copy()
        noisy[flipped] = [rng.choice([c for c in range(len(classes)) if c != truth[i]]) for i in flipped]
        ranked = rank_label_issues(list(paths), noisy, out_of_fold_proba(features, noisy, seed=seed), classes)
        top, truly = set(ranked["path"][: len(truth) // 10]), set(paths[flipped])
        flagged = set(ranked["path"][ranked["confident_learning_issue"]])
        trials.append({
            "seed": seed, "flipped": len(flipped),
            "recall_top10pct": len(top & truly) / len(truly), "precision_top10pct": len(top & truly) / len(top),
            "cl_flagged": len(flagged), "cl_recall": len(flagged & truly) / len(truly),
            "cl_precision": len(flagged & truly) / max(1, len(flagged)),
        })  # fmt: skip
    return trials


def part_group_agreement(manifest) -> dict[str, float]:
    """ARI of the pixel-derived part groups against frame-number groups (across and within classes)."""
    frames = np.array([int(FRAME_NAME.match(Path(p).stem)["frame"]) for p in manifest["path"]])
    within = np.empty(len(manifest), dtype=object)
    for label in manifest["label"].unique():
        rows = np.flatnonzero((manifest["label"] == label).to_numpy())
        groups = frame_cluster_groups(frames[rows].tolist(), manifest["path"].to_numpy()[rows].tolist(), 100)
        within[rows] = [f"{label}/{g}" for g in groups]
    table = compute_image_properties(manifest["path"].tolist(), None).assign(
        label=manifest["label"].to_numpy()
    )
    pixels = find_duplicates(table, ChecksConfig().duplicates).part_group
    return {
        "across_classes": adjusted_rand_score(manifest["group"], pixels),
        "within_class": adjusted_rand_score(within, pixels),
    }


def main() -> None:
    apply_offline_defaults()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        cold, _ = timed_gate(Path(shutil.copytree(DATA, root / "cold-data")), root / "cache", root / "cold")
        warm, checked = timed_gate(
            Path(shutil.copytree(DATA, root / "warm-data")), root / "cache", root / "warm"
        )
        paths, md5 = checked.manifest["path"].tolist(), checked.manifest["md5"].tolist()
        started = time.perf_counter()
        cached_embeddings(paths, md5, root / "cache")
        embed_cold = time.perf_counter() - started
        started = time.perf_counter()
        features = cached_embeddings(paths, md5, root / "cache")
        trials = mislabel_trials(checked.manifest, features)
        review_warm = (time.perf_counter() - started) / len(trials)
    ari = part_group_agreement(load_dataset(DATA).manifest)
    result = {
        "gate_seconds_cold_cache": cold, "gate_seconds_warm_cache": warm, "embedding_seconds_cold": embed_cold,
        "label_review_seconds_cached_features": review_warm,
        "checks_total_seconds_cached": warm + review_warm,
        "ari_pixel_groups_vs_frame_groups_across_classes": ari["across_classes"],
        "ari_pixel_groups_vs_frame_groups_within_class": ari["within_class"],
        "mislabel_trials": trials,
        "mislabel_recall_top10pct_mean": float(np.mean([t["recall_top10pct"] for t in trials])),
        "mislabel_precision_top10pct_mean": float(np.mean([t["precision_top10pct"] for t in trials])),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/data_checks.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
