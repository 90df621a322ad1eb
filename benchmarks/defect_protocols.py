"""Evaluation protocols for the defect classifier on the magnetic tiles (all tile-grouped).

  python -m benchmarks.defect_protocols holdout  --set fit.epochs=8 ...   one grouped hold-out
  python -m benchmarks.defect_protocols kfold    --folds 5 ...            k-fold CV by tile
  python -m benchmarks.defect_protocols lighting ...                      train exp1-3, test exp4-6

Each run appends one JSON line (config, per-fold metrics, mean and spread) to --out, which
BENCHMARKS.md summarises. Settings are chosen on validation parts inside the training folds;
the test folds are only scored.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from data_checks.manifest import load_dataset
from flows.config import DefectJobConfig, load_config
from flows.settings import apply_offline_defaults
from training.checkpoint import load_model
from training.evaluate import evaluate_split
from training.fit import fit
from training.model import make_spec
from training.split import Split, grouped_holdout, grouped_kfold, lighting_shift
from training.train import training_data

DATA = Path("data/magnetic_tiles")
CACHE = Path(".shopfloor/cache")


def folds_for(protocol: str, manifest, cfg: DefectJobConfig, k: int) -> list[Split]:
    labels, groups = manifest["label"].to_numpy(), manifest["group"].to_numpy()
    if protocol == "kfold":
        return grouped_kfold(labels, groups, k, cfg.split.val_fraction, cfg.split.seed)
    if protocol == "lighting":
        lighting = manifest["lighting"].to_numpy()
        return [
            lighting_shift(
                labels, groups, lighting, {"exp1", "exp2", "exp3"}, {"exp4", "exp5", "exp6"}, cfg.split
            )
        ]
    return [grouped_holdout(labels, groups, cfg.split)]


def run_fold(cfg: DefectJobConfig, manifest, classes, split: Split, out: Path) -> dict:
    data = training_data(manifest, classes, cfg.model.image_size, CACHE)
    spec = make_spec(
        cfg.model.backbone, classes, cfg.model.image_size, cfg.model.dropout, cfg.model.aux_seg_weight > 0
    )
    started = time.perf_counter()
    result = fit(
        cfg.fit, cfg.augment, spec, data, split.train, split.val, out, aux_seg_weight=cfg.model.aux_seg_weight
    )
    model, _ = load_model(result.best_checkpoint)
    ev = evaluate_split(
        model, data.images, data.labels, split.val, split.test, cfg.eval, torch.device("cpu"), out
    )
    point = ev.test.operating_point
    return {
        "test_macro_f1": ev.test.macro_f1, "test_balanced_accuracy": ev.test.balanced_accuracy,
        "test_recall": {c: v["recall"] for c, v in ev.test.per_class.items()},
        "defect_recall": point.defect_recall if point else None, "false_reject_rate": point.false_reject_rate if point else None,
        "val_macro_f1": result.best_val_macro_f1, "best_epoch": result.best_epoch, "history": result.history,
        "train_images_per_s": result.train_images_per_s, "minutes": (time.perf_counter() - started) / 60,
        "n_test": len(split.test),
    }  # fmt: skip


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("protocol", choices=["holdout", "kfold", "lighting"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-fold", type=int, default=None)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--name", default="")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/defect_protocols.jsonl"))
    args = parser.parse_args()
    cfg = load_config(DefectJobConfig, None, ["split.frozen_test_dir=null", *args.set])
    manifest = load_dataset(DATA).manifest
    classes = sorted(manifest["label"].unique())
    folds = folds_for(args.protocol, manifest, cfg, args.folds)
    results = []
    for i, split in enumerate(folds):
        if args.only_fold is not None and i != args.only_fold:
            continue
        row = run_fold(
            cfg, manifest, classes, split, Path("artifacts/bench") / f"{args.protocol}-{args.name}-{i}"
        )
        print(
            f"fold {i}: test macro-F1 {row['test_macro_f1']:.3f}, defect recall {row['defect_recall']}, FRR {row['false_reject_rate']}",
            flush=True,
        )
        results.append(row)
    scores = [r["test_macro_f1"] for r in results]
    summary = {
        "name": args.name, "protocol": args.protocol, "settings": args.set, "folds": results,
        "macro_f1_mean": float(np.mean(scores)), "macro_f1_std": float(np.std(scores)),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as handle:
        handle.write(json.dumps(summary, default=str) + "\n")
    print(f"{args.name}: macro-F1 {summary['macro_f1_mean']:.3f} +- {summary['macro_f1_std']:.3f}")


if __name__ == "__main__":
    main()
