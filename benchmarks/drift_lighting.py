"""Drift detection under a real lighting shift, on the shipped model's own int8 file.

  python -m benchmarks.drift_lighting [--run artifacts/runs/<id>] [--devices 20] [--cycles 50] [--shifted 10]

The tiles the model never trained on (the run's validation and test parts) are split by tile in two:
the *reference* half under lamps exp1-exp3 becomes the version's reference (monitor.reference, with
its floors); the *stream* half feeds `--devices` simulated devices with windows of 64 images drawn
from it. First `--cycles` cycles in distribution (exp1-exp3, the lamps the reference saw), then
`--shifted` cycles after a lamp change (exp4-exp6). Every window goes through the monitor as
shipped (telemetry store, Benjamini-Hochberg across devices, floors, 3-of-4 persistence). Side by
side on the same windows: what a naive monitor does (KS per feature at p < 0.05, no correction, no
floor, no persistence). Also times one cycle over 100 devices x 1 window (B = 500 permutations).
Writes benchmarks/results/drift_lighting.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from core.settings import apply_offline_defaults
from core.telemetry import IMAGE_STATS, WindowBuilder

WINDOW = 64


def latest_run() -> Path:
    found = sorted(Path("artifacts/runs").glob("*/export/model.int8.onnx"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit("no trained run under artifacts/runs; run `make demo` first or pass --run")
    return found[-1].parents[1]


def window(items, index: np.ndarray, window_id: str, version: str):
    from edge.telemetry import TelemetryWindow

    builder = WindowBuilder(
        "image-classifier", classes=items.proba.shape[1], sample_size=WINDOW, seed=int(index[0])
    )
    for i in index:
        builder.add_image(items.proba[i], items.embeddings[i], {k: items.stats[k][i] for k in IMAGE_STATS})
    return TelemetryWindow(**builder.summary(), window_id=window_id, model="defect-classifier", version=version,
                           started=window_id, ended=window_id)  # fmt: skip


def naive_alarm(w, reference: dict) -> bool:
    """KS per feature at p < 0.05, uncorrected: confidence, each image statistic, each embedding dimension."""
    from scipy.stats import ks_2samp

    pairs = [(w.top_probability, reference["top_probability"])]
    pairs += [(w.image_stats[k], reference["image_stats"][k]) for k in IMAGE_STATS]
    emb, ref = np.asarray(w.embeddings), np.asarray(reference["embeddings"])
    pairs += [(emb[:, d], ref[:, d]) for d in range(emb.shape[1])]
    return any(ks_2samp(a, b).pvalue < 0.05 for a, b in pairs)


def stream(items, pools: dict, phases: list[tuple[str, int]], devices: int, reference: dict, rng) -> dict:
    """Run the monitor cycle by cycle; per phase, the share of windows whose device is in drift, and
    the naive monitor's alarm share on the same windows."""
    from edge.telemetry import TelemetryStore
    from monitor.cycle import run_cycle
    from monitor.store import MonitorStore

    out = {}
    with tempfile.TemporaryDirectory() as scratch:
        telemetry, store = TelemetryStore(Path(scratch) / "t.db"), MonitorStore(Path(scratch) / "m.db")
        cycle = 0
        for phase, cycles in phases:
            drift, flagged, naive, first_drift, seconds = 0, 0, 0, {}, []
            for c in range(cycles):
                for d in range(devices):
                    w = window(items, rng.choice(pools[phase], WINDOW), f"c{cycle:04d}-d{d:02d}", "1")
                    telemetry.add(f"cam-{d:02d}", w)
                    naive += naive_alarm(w, reference)
                started = time.perf_counter()
                report = run_cycle(telemetry, store, lambda m, v: reference, ["defect-classifier"])
                seconds.append(time.perf_counter() - started)
                flagged += sum(a.flagged for a in report.assessments)
                for s in report.states:
                    drift += s.state == "drift"
                    if s.state == "drift":
                        first_drift.setdefault(s.device, c + 1)
                cycle += 1
            windows = cycles * devices
            out[phase] = {"windows": windows, "in_drift_share": drift / windows, "flagged_share": flagged / windows,
                          "naive_alarm_share": naive / windows, "devices_detected": len(first_drift),
                          "delay_windows": sorted(first_drift.values()), "cycle_s_median": float(np.median(seconds))}  # fmt: skip
    return out


def cycle_speed(items, pool: np.ndarray, reference: dict, rng, devices: int = 100) -> dict:
    """One cycle over `devices` x 1 window, B = 500 permutations: seconds, and the same windows without MMD."""
    from edge.telemetry import TelemetryStore
    from monitor.cycle import run_cycle
    from monitor.store import MonitorStore

    with tempfile.TemporaryDirectory() as scratch:
        telemetry = TelemetryStore(Path(scratch) / "t.db")
        for d in range(devices):
            telemetry.add(f"cam-{d:03d}", window(items, rng.choice(pool, WINDOW), f"speed-{d}", "1"))
        started = time.perf_counter()
        report = run_cycle(
            telemetry, MonitorStore(Path(scratch) / "m.db"), lambda m, v: reference, ["defect-classifier"]
        )
        return {
            "devices": devices,
            "windows": len(report.assessments),
            "seconds": round(time.perf_counter() - started, 2),
        }


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--onnx", type=Path, default=None, help="the int8 file (default: the run's export)")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--shifted", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from monitor.reference import image_reference, score_images
    from training.images.prepare import read_split_manifest

    run = args.run or latest_run()
    manifest = read_split_manifest(run / "checks" / "manifest_split.csv")
    held = manifest[manifest["split"].isin(["val", "test"])].reset_index(drop=True)
    classes = sorted(manifest["label"].unique())
    rng = np.random.default_rng(args.seed)
    tiles = held["group"].unique()
    reference_tiles = set(rng.permutation(tiles)[: len(tiles) // 2])
    items = score_images(args.onnx or run / "export" / "model.int8.onnx", held["path"].tolist(),
                         np.array([classes.index(x) for x in held["label"]]))  # fmt: skip
    early, ref_half = (
        held["lighting"].isin(["exp1", "exp2", "exp3"]).to_numpy(),
        held["group"].isin(reference_tiles).to_numpy(),
    )
    late = held["lighting"].isin(["exp4", "exp5", "exp6"]).to_numpy()
    reference_index = np.flatnonzero(early & ref_half)
    from monitor.reference import ImageItems

    subset = ImageItems(items.proba[reference_index], items.embeddings[reference_index],
                        {k: v[reference_index] for k, v in items.stats.items()}, items.labels[reference_index],
                        held["group"].to_numpy()[reference_index])  # fmt: skip
    reference = image_reference(subset, WINDOW, seed=args.seed)
    pools = {
        "exp1-3 (in distribution)": np.flatnonzero(early & ~ref_half),
        "exp4-6 (lamp changed)": np.flatnonzero(late & ~ref_half),
    }
    phases = [("exp1-3 (in distribution)", args.cycles), ("exp4-6 (lamp changed)", args.shifted)]
    result = {"run": str(run), "onnx": str(args.onnx or run / "export" / "model.int8.onnx"), "reference_images": len(reference_index), "stream_images": {k: len(v) for k, v in pools.items()},
              "floors": reference["floors"], "phases": stream(items, pools, phases, args.devices, reference, rng),
              "cycle_100_devices": cycle_speed(items, pools["exp1-3 (in distribution)"], reference, rng)}  # fmt: skip
    print(json.dumps(result, indent=2))
    Path("benchmarks/results/drift_lighting.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
