"""Evaluation protocols for the defect classifier on the magnetic tiles (all tile-grouped), or on another
line with `--data` (grouped by its own groups; colour kept when the data set has colour).

  python -m benchmarks.defect_protocols holdout  --set fit.epochs=8 ...   one grouped hold-out
  python -m benchmarks.defect_protocols kfold    --folds 5 ...            k-fold CV by tile
  python -m benchmarks.defect_protocols lighting ...                      train exp1-3, test exp4-6
  python -m benchmarks.defect_protocols lighting --name N --rescore       re-score run N's best.pt
  python -m benchmarks.defect_protocols kfold --name N --rescore --checkpoint last
                                                                          ... or its last epoch's
  python -m benchmarks.defect_protocols kfold --members A,B --name A+B      average runs A and B's
                                                                          fold models (no training)

Each run appends one JSON line (config, per-fold metrics, mean and spread) to --out, which
RESULTS.md summarises. Settings are chosen on validation parts inside the training folds;
the test folds are only scored.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from core.config import load_config
from core.settings import apply_offline_defaults
from data_checks.images.manifest import load_dataset
from flows.images.config import DefectJobConfig
from training.images.checkpoint import load_model
from training.images.data import colour_of, training_data
from training.images.evaluate import EvalResult, evaluate_split, predict_proba, score_probabilities
from training.images.fit import fit
from training.images.model import make_spec
from training.images.reject_rule import good_class
from training.images.split import Split, grouped_holdout, grouped_kfold, lighting_shift

DATA = Path("data/magnetic_tiles")
TRAIN_LIGHTING, TEST_LIGHTING = {"exp1", "exp2", "exp3"}, {"exp4", "exp5", "exp6"}
CACHE = Path(".shopfloor/cache")


def folds_for(protocol: str, manifest, cfg: DefectJobConfig, k: int) -> list[Split]:
    labels, groups = manifest["label"].to_numpy(), manifest["group"].to_numpy()
    if protocol == "kfold":
        return grouped_kfold(labels, groups, k, cfg.split.val_fraction, cfg.split.seed)
    if protocol == "lighting":
        lighting = manifest["lighting"].to_numpy()
        return [lighting_shift(labels, groups, lighting, TRAIN_LIGHTING, TEST_LIGHTING, cfg.split)]
    return [grouped_holdout(labels, groups, cfg.split)]


def in_distribution_test(manifest, cfg: DefectJobConfig) -> np.ndarray:
    """The lighting protocol's test tiles, shot under the *training* lamps: its in-distribution twin."""
    labels, groups = manifest["label"].to_numpy(), manifest["group"].to_numpy()
    held_out = grouped_holdout(labels, groups, cfg.split).test
    return held_out[np.isin(manifest["lighting"].to_numpy()[held_out], list(TRAIN_LIGHTING))]


def run_fold(
    cfg: DefectJobConfig,
    manifest,
    classes,
    split: Split,
    out: Path,
    twin: np.ndarray | None = None,
    rescore: bool = False,
    checkpoint: str = "best",
) -> dict:  # cfg.model.colour and cfg.eval.ok_class are settled (main)
    """Train (or, with `rescore`, reload out/{checkpoint}.pt) and score; `twin`: a second test set.

    `checkpoint="last"` scores the final epoch instead of the one validation chose, which asks
    whether choosing on ~25 validation tiles helps at all.
    """
    data = training_data(manifest, classes, cfg.model.image_size, CACHE, bool(cfg.model.colour))
    spec = make_spec(
        cfg.model.backbone,
        classes,
        cfg.model.image_size,
        cfg.model.dropout,
        cfg.model.aux_seg_weight > 0,
        cfg.model.mask_pooling,
        bool(cfg.model.colour),
    )
    started = time.perf_counter()
    result = None
    if not rescore:
        result = fit(
            cfg.fit,
            cfg.augment,
            spec,
            data,
            split.train,
            split.val,
            out,
            aux_seg_weight=cfg.model.aux_seg_weight,
        )
    model, _ = load_model(result.best_checkpoint if result else out / f"{checkpoint}.pt")
    ev = evaluate_split(
        model, data.images, data.labels, split.val, split.test, cfg.eval, torch.device("cpu"), out
    )
    extra = {}
    if twin is not None:
        ev_twin = evaluate_split(
            model, data.images, data.labels, split.val, twin, cfg.eval, torch.device("cpu"), out / "twin"
        )
        extra = {"in_distribution_test_macro_f1": ev_twin.test.macro_f1, "n_in_distribution_test": len(twin)}
    row = extra | scores_row(ev, split)
    if result is None:  # re-scored: validation is recomputed, so eval settings such as TTA are chosen on it
        return row
    return row | {
        "val_macro_f1": result.best_val_macro_f1, "best_epoch": result.best_epoch, "history": result.history,
        "train_images_per_s": result.train_images_per_s, "minutes": (time.perf_counter() - started) / 60,
    }  # fmt: skip


def scores_row(ev: EvalResult, split: Split) -> dict:
    point = ev.test.operating_point
    return {
        "test_macro_f1": ev.test.macro_f1, "test_balanced_accuracy": ev.test.balanced_accuracy,
        "test_recall": {c: v["recall"] for c, v in ev.test.per_class.items()},
        "defect_recall": point.defect_recall if point else None, "false_reject_rate": point.false_reject_rate if point else None,
        "val_macro_f1": ev.val.macro_f1, "n_test": len(split.test),
    }  # fmt: skip


def ensemble_fold(
    cfg: DefectJobConfig, manifest, classes, split: Split, members: list[Path], out: Path
) -> dict:
    """Average the class probabilities of several saved models of one fold, then score as one model.

    Why: models trained with other seeds or augmentations err on different tiles; averaging
    them is the cheapest variance reduction there is, at the price of running each at inference.
    The reject threshold is chosen on the averaged validation probabilities, as for one model.
    """
    data = training_data(manifest, classes, cfg.model.image_size, CACHE, bool(cfg.model.colour))
    models = [load_model(member / "best.pt")[0] for member in members]
    cpu = torch.device("cpu")
    val = np.mean([predict_proba(m, data.images[split.val], cpu) for m in models], 0)
    test = np.mean([predict_proba(m, data.images[split.test], cpu) for m in models], 0)
    ev = score_probabilities(
        val, test, data.labels[split.val], data.labels[split.test], tuple(classes), cfg.eval, out
    )
    return scores_row(ev, split)


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("protocol", choices=["holdout", "kfold", "lighting"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-fold", type=int, default=None)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--name", default="")
    parser.add_argument("--rescore", action="store_true", help="score the run's saved best.pt, no training")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best", help="with --rescore")
    parser.add_argument(
        "--members", default="", help="comma-separated run names whose fold models to average"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/defect_protocols.jsonl"))
    parser.add_argument("--data", type=Path, default=DATA, help="a class-folder tree or CSV manifest")
    args = parser.parse_args()
    if args.checkpoint == "last" and not args.rescore:
        parser.error("--checkpoint last re-scores a trained run: add --rescore")
    if args.members and args.protocol == "lighting":
        parser.error(
            "--members averages kfold or holdout runs; the lighting protocol's twin set is not averaged"
        )
    cfg = load_config(DefectJobConfig, None, ["split.frozen_test_dir=null", *args.set])
    manifest = load_dataset(args.data).manifest
    classes = sorted(manifest["label"].unique())
    good, _ = good_class(classes, cfg.eval.ok_class)
    colour = colour_of(cfg.model.colour, manifest)
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"ok_class": good}),
                                 "model": cfg.model.model_copy(update={"colour": colour})})  # fmt: skip
    folds = folds_for(args.protocol, manifest, cfg, args.folds)
    results = []
    for i, split in enumerate(folds):
        if args.only_fold is not None and i != args.only_fold:
            continue
        twin = in_distribution_test(manifest, cfg) if args.protocol == "lighting" else None
        out = Path("artifacts/bench") / f"{args.protocol}-{args.name}-{i}"
        if args.members:
            members = [Path("artifacts/bench") / f"{args.protocol}-{m}-{i}" for m in args.members.split(",")]
            row = ensemble_fold(cfg, manifest, classes, split, members, out)
        else:
            row = run_fold(cfg, manifest, classes, split, out, twin, args.rescore, args.checkpoint)
        print(
            f"fold {i}: " + ", ".join(f"{k} {v}" for k, v in row.items() if not isinstance(v, (list, dict)))
        )
        results.append(row)
    scores = [r["test_macro_f1"] for r in results]
    summary = {
        "data": str(args.data), "name": args.name + ("-rescored" if args.rescore else "") + ("-last" if args.checkpoint == "last" else ""), "protocol": args.protocol, "settings": args.set,
        "members": args.members.split(",") if args.members else None, "folds": results,
        "macro_f1_mean": float(np.mean(scores)), "macro_f1_std": float(np.std(scores)),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as handle:
        handle.write(json.dumps(summary, default=str) + "\n")
    print(f"{args.name}: macro-F1 {summary['macro_f1_mean']:.3f} +- {summary['macro_f1_std']:.3f}")


if __name__ == "__main__":
    main()
