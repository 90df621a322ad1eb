"""One training process against two (torchrun, DistributedDataParallel, gloo) with the same global batch.

  python -m benchmarks.ddp_processes [--size 128] [--epochs 4] [--seeds 0 1 2]

Same data (all magnetic tiles, one tile-grouped train/validation split), same settings and seed per
pair; the pairs alternate which goes first so machine drift hits both. Reports each run's best
validation macro-F1 (the figure early stopping and `best.pt` follow) and its training images/s
(mean over epochs, all ranks together), the ratio of medians (two / one), and whether the two-process
figures lie within the seed noise of the one-process ones (|mean difference| <= 2 sd over seeds).
Writes benchmarks/results/ddp_processes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from core.settings import apply_offline_defaults
from data_checks.images.manifest import load_dataset
from training.images.config import AugmentConfig, FitConfig, ModelConfig, SplitConfig
from training.images.split import grouped_holdout
from training.images.torchrun import train_on_processes
from training.images.train import train_classifier

REPO = Path(__file__).resolve().parents[1]


def _split_manifest():
    manifest = load_dataset(REPO / "data" / "magnetic_tiles").manifest
    classes = sorted(manifest["label"].unique())
    labels = np.array([classes.index(label) for label in manifest["label"]])
    parts = grouped_holdout(
        labels, manifest["group"].to_numpy(), SplitConfig(test_fraction=0.2, val_fraction=0.15)
    )
    split = np.full(len(manifest), "train", dtype=object)
    split[parts.val], split[parts.test] = "val", "test"
    return manifest.assign(split=split), classes


def _run(manifest, classes, model: ModelConfig, fit: FitConfig, work: Path, cache: Path) -> dict:
    started = time.perf_counter()
    if fit.processes == 1:
        out = train_classifier(manifest, classes, model, AugmentConfig(), fit, work, cache)
    else:
        out = train_on_processes(manifest, classes, model, AugmentConfig(), fit, work, cache)
    return {"processes": fit.processes, "seed": fit.seed, "best_val_macro_f1": out.fit.best_val_macro_f1,
            "best_epoch": out.fit.best_epoch, "train_images_per_s": out.fit.train_images_per_s,
            "wall_s": time.perf_counter() - started}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    apply_offline_defaults()
    manifest, classes = _split_manifest()
    model = ModelConfig(image_size=args.size)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i, seed in enumerate(args.seeds):
            order = (1, 2) if i % 2 == 0 else (2, 1)
            for processes in order:
                fit = FitConfig(epochs=args.epochs, seed=seed, processes=processes, device="cpu")
                runs.append(_run(manifest, classes, model, fit, work / f"{seed}-{processes}", work / "cache"))
                print(json.dumps(runs[-1]), flush=True)
    by = {n: [r for r in runs if r["processes"] == n] for n in (1, 2)}
    f1 = {n: [r["best_val_macro_f1"] for r in by[n]] for n in by}
    speed = {n: statistics.median(r["train_images_per_s"] for r in by[n]) for n in by}
    noise = 2 * statistics.stdev(f1[1]) if len(f1[1]) > 1 else 0.0
    result = {
        "protocol": f"all magnetic tiles, one tile-grouped split, {args.size} px, {args.epochs}+1 epochs of 640 "
        "draws, global batch 32, default augmentation; 1 process (2 torch threads) vs 2 torchrun ranks "
        "(gloo, 1 thread each), same seeds, alternating order",
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "runs": runs,
        "val_macro_f1_mean": {n: statistics.mean(f1[n]) for n in f1},
        "val_macro_f1_sd": {n: statistics.stdev(f1[n]) if len(f1[n]) > 1 else 0.0 for n in f1},
        "within_seed_noise": abs(statistics.mean(f1[2]) - statistics.mean(f1[1])) <= noise,
        "images_per_s_median": speed, "images_per_s_ratio_two_over_one": speed[2] / speed[1],
    }  # fmt: skip
    out = REPO / "benchmarks" / "results" / "ddp_processes.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
