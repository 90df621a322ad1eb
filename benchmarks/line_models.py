"""Both product lines on one protocol: the frozen-backbone linear probe vs the image anomaly model (PatchCore),
EfficientNet-Lite0 vs -Lite2, with the shipped file's batch-1 latency (issue 26).

  python -m benchmarks.line_models [--variants NAME ...]

Protocol, per line: grouped 5-fold (training.images.split.grouped_kfold, seed 0; each fold's validation part
carved from its own training groups; tiles grouped by tile, ball screws by camera position), 224 px.
- probe: the pretrained backbone frozen, logistic regression on its pooled features of the train part
  (training.images.probe, what every training run fits beside the fine-tune); test macro-F1; the reject
  threshold chosen on validation for <= 5 % false rejects (the shipped rule), test defect recall and false
  rejects at it.
- anomaly: PatchCore as shipped (training.images.patchcore defaults), bank from the train part's good images,
  threshold on the validation part's good images for 5 %; test AUROC, defect recall and false rejects.
  `own_camera_*`: the threshold instead set on every other good image of each test group (camera position),
  as `registry set-threshold --good-images` does on a line's own camera; false rejects on the other good
  images, recall on all test defects.
- latency: batch 1 on this CPU, median of 30 calls after warm-up, of the probe network as int8 ONNX (the
  shipped int8 recipe, export.images.stage.int8_for_edge) and of the PatchCore file (fp32); Lite2 is also
  given as a ratio to Lite0 measured in the same process.
The fine-tune on these folds is not part of this run (tiles, Lite0: RESULTS.md section 1; about an hour per
line and backbone on 2 cores). Writes benchmarks/results/line_models.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from core.onnx_runtime import session
from core.settings import apply_offline_defaults
from data_checks.images.manifest import load_dataset
from export.images.config import ExportConfig
from export.images.patchcore import export_onnx
from export.images.stage import batch1_latency_ms, calibration_sample, int8_for_edge
from inputs.images import channels_first
from training.images.config import PatchCoreConfig, RejectRule
from training.images.data import training_data
from training.images.embeddings import linear_probe
from training.images.metrics import macro_f1, operating_point
from training.images.model import DefectClassifier, make_spec
from training.images.patchcore import (
    PatchCoreScorer,
    PatchFeatures,
    as_patches,
    embed,
    fit_memory_bank,
    nearest_distance,
    threshold_for,
)
from training.images.probe import fold_probe, pooled_features
from training.images.reject_rule import choose_operating_point
from training.images.split import grouped_kfold

CACHE, OUT, SIZE = Path(".shopfloor/cache"), Path("benchmarks/results/line_models.json"), 224
LINES = {
    "tiles": (Path("data/magnetic_tiles"), "MT_Free"),
    "ball_screw": (Path("data/ball_screw/ball_screw.csv"), "good"),
}
# name -> (line, backbone, colour)
VARIANTS = {
    "tiles/lite0": ("tiles", "efficientnet_lite0", False),
    "tiles/lite2": ("tiles", "efficientnet_lite2", False),
    "ball_screw/lite0/rgb": ("ball_screw", "efficientnet_lite0", True),
    "ball_screw/lite0/grey": ("ball_screw", "efficientnet_lite0", False),
    "ball_screw/lite2/rgb": ("ball_screw", "efficientnet_lite2", True),
}


def full_proba(probe, features: np.ndarray, classes: int) -> np.ndarray:
    """(N, classes) probabilities; a class absent from a fold's training part gets 0."""
    out = np.zeros((len(features), classes))
    out[:, probe.classes_] = probe.predict_proba(features)
    return out


def probe_folds(features, labels, ok: int, splits) -> list[dict]:
    rule, out = RejectRule(target_false_reject_rate=0.05), []
    for split in splits:
        probe = linear_probe().fit(features[split.train], labels[split.train])
        val, test = (full_proba(probe, features[rows], labels.max() + 1) for rows in (split.val, split.test))
        chosen = choose_operating_point(labels[split.val], val, ok, rule)
        point = operating_point(labels[split.test], test, ok, chosen.threshold)
        out.append({"test_macro_f1": macro_f1(labels[split.test], test.argmax(1), labels.max() + 1),
                    "test_recall": point.defect_recall, "test_false_reject_rate": point.false_reject_rate})  # fmt: skip
    return out


@torch.inference_mode()
def own_camera(
    scores: np.ndarray, good: np.ndarray, groups: np.ndarray, test: np.ndarray, rate: float
) -> dict:
    """`registry set-threshold --good-images` on the test positions: the threshold set on every other good
    image of each test group (camera position), measured on the rest of the good images and on all defects."""
    calibrate, held = [], []
    for group in np.unique(groups[test]):
        rows = test[(groups[test] == group) & good[test]]
        calibrate += list(rows[::2])
        held += list(rows[1::2])
    threshold = threshold_for(scores[calibrate], rate)
    defects = test[~good[test]]
    return {"own_camera_recall": float(np.mean(scores[defects] > threshold)),
            "own_camera_false_reject_rate": float(np.mean(scores[held] > threshold))}  # fmt: skip


def anomaly_folds(
    embedding: torch.Tensor, good: np.ndarray, groups: np.ndarray, splits, cfg: PatchCoreConfig
) -> tuple[list[dict], torch.Tensor]:
    out, first_bank = [], None
    for split in splits:
        bank = fit_memory_bank(as_patches(embedding[split.train[good[split.train]]]), cfg.coreset_fraction, cfg.seed,
                               cfg.projection_dims)  # fmt: skip
        first_bank = bank if first_bank is None else first_bank
        bank_sq = (bank * bank).sum(1)  # the search alone: the embeddings are computed once per variant
        rows = np.concatenate([split.val, split.test])
        scores = np.full(len(good), np.nan)
        for i in range(0, len(rows), 16):
            e = embedding[rows[i : i + 16]]
            patches = e.permute(0, 2, 3, 1).reshape(len(e), -1, e.shape[1])
            scores[rows[i : i + 16]] = nearest_distance(patches, bank, bank_sq).amax(1).numpy()
        threshold = threshold_for(scores[split.val][good[split.val]], cfg.target_false_reject_rate)
        test = split.test
        rejected = scores[test] > threshold
        out.append({"test_auroc": float(roc_auc_score(~good[test], scores[test])),
                    "test_recall": float(rejected[~good[test]].mean()),
                    "test_false_reject_rate": float(rejected[good[test]].mean())}
                   | own_camera(scores, good, groups, test, cfg.target_false_reject_rate))  # fmt: skip
    return out, first_bank


def latency_ms(path: Path, pixels: np.ndarray) -> float:
    sess = session(path)
    name = sess.get_inputs()[0].name
    return batch1_latency_ms(lambda x: sess.run(None, {name: x}), pixels, 30)[0]


def probe_int8_latency(
    backbone, classes, colour, features_model, features, labels, split, pixels, work
) -> float:
    """The probe network (fold 0's probe folded into the classifier layer) as shipped int8, batch 1."""
    probe = linear_probe().fit(features[split.train], labels[split.train])
    fold_probe(features_model.net.classifier, probe, len(classes))
    cfg = ExportConfig()
    path = int8_for_edge(
        features_model.eval(), calibration_sample(pixels, split.train, cfg), work / "probe.int8.onnx", cfg
    )
    return latency_ms(path, pixels[split.test[:16]])


def mean_std(folds: list[dict]) -> dict:
    return {
        k: [float(np.mean([f[k] for f in folds])), float(np.std([f[k] for f in folds]))] for k in folds[0]
    }


def run_variant(line: str, backbone: str, colour: bool) -> dict:
    data_path, good_name = LINES[line]
    manifest = load_dataset(data_path).manifest
    classes = sorted(manifest["label"].unique())
    data = training_data(manifest, classes, SIZE, CACHE, colour)
    labels, good = data.labels, (manifest["label"] == good_name).to_numpy()
    splits = grouped_kfold(labels, manifest["group"].to_numpy(), 5, 0.15, seed=0)
    pixels = channels_first(data.images)
    started = time.perf_counter()
    model = DefectClassifier(make_spec(backbone, classes, SIZE, 0.0, False, colour=colour)).eval()
    features = pooled_features(model, data.images, torch.device("cpu"))
    probe = probe_folds(features, labels, classes.index(good_name), splits)
    print(
        f"  probe: {time.perf_counter() - started:.0f} s, test macro-F1 {mean_std(probe)['test_macro_f1'][0]:.3f}"
    )
    cfg = PatchCoreConfig(backbone=backbone, image_size=SIZE)
    patch_features = PatchFeatures(cfg)
    embedding = embed(patch_features, data.images)
    anomaly, bank = anomaly_folds(embedding, good, manifest["group"].to_numpy(), splits, cfg)
    print(f"  anomaly: recall {mean_std(anomaly)['test_recall'][0]:.3f}")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        probe_ms = probe_int8_latency(
            backbone, classes, colour, model, features, labels, splits[0], pixels, work
        )
        anomaly_ms = latency_ms(export_onnx(PatchCoreScorer(patch_features, bank), work / "pc.onnx", SIZE,
                                            channels=pixels.shape[1]), pixels[splits[0].test[:16]])  # fmt: skip
    return {"line": line, "backbone": backbone, "input": "RGB" if colour else "grey", "images": len(manifest),
            "groups": int(manifest["group"].nunique()), "probe": mean_std(probe), "anomaly": mean_std(anomaly),
            "probe_folds": probe, "anomaly_folds": anomaly, "probe_int8_latency_ms": probe_ms,
            "anomaly_fp32_latency_ms": anomaly_ms}  # fmt: skip


def markdown(result: dict) -> str:
    pm = lambda m, k: f"{m[k][0]:.3f} ± {m[k][1]:.3f}"  # noqa: E731  (a table-cell formatter)
    lines = ["## Both product lines: linear probe vs image anomaly model, Lite0 vs Lite2", "",
             "Reproduce: `python -m benchmarks.line_models` (protocol in its docstring). Grouped 5-fold, 224 px, "
             "thresholds on validation for <= 5 % false rejects, mean ± std over folds. Latency: batch 1, median, "
             f"this CPU ({result['cpu_count']} cores, load {result['load_average']}).", "",
             "| variant | probe macro-F1 | probe recall | probe FRR | anomaly AUROC | anomaly recall | anomaly FRR | probe int8 ms | anomaly fp32 ms |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in result["variants"].items():
        p, a = r["probe"], r["anomaly"]
        lines.append(f"| {name} | {pm(p, 'test_macro_f1')} | {pm(p, 'test_recall')} | {pm(p, 'test_false_reject_rate')} | "
                     f"{pm(a, 'test_auroc')} | {pm(a, 'test_recall')} | {pm(a, 'test_false_reject_rate')} | "
                     f"{r['probe_int8_latency_ms']:.1f} | {r['anomaly_fp32_latency_ms']:.1f} |")  # fmt: skip
    own = [
        (name, r["anomaly"]) for name, r in result["variants"].items() if "own_camera_recall" in r["anomaly"]
    ]
    if own:
        lines += ["", "Anomaly threshold set on the test groups' own good images instead (every other one; "
                  "`registry set-threshold --good-images`): false rejects on the rest, recall on all defects:", ""]  # fmt: skip
        lines += [f"- {name}: recall {pm(a, 'own_camera_recall')} at {pm(a, 'own_camera_false_reject_rate')} "
                  f"false rejects (validation-set threshold: {pm(a, 'test_recall')} at {pm(a, 'test_false_reject_rate')})"
                  for name, a in own]  # fmt: skip
    lines += ["", *result.get("notes", [])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    apply_offline_defaults()
    torch.set_num_threads(os.cpu_count() or 1)
    result = json.loads(OUT.read_text()) if OUT.exists() else {"variants": {}}
    for name in args.variants:
        print(name)
        result["variants"][name] = run_variant(*VARIANTS[name])
        result |= {"cpu_count": os.cpu_count(), "load_average": [round(x, 1) for x in os.getloadavg()]}
        OUT.write_text(json.dumps(result, indent=2))
        OUT.with_suffix(".md").write_text(markdown(result))


if __name__ == "__main__":
    main()
