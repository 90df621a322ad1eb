"""Batch-1 CPU latency of the shipped model: PyTorch fp32 eager vs ONNX Runtime fp32 vs ONNX Runtime int8.

  python -m benchmarks.onnx_speed [--checkpoint artifacts/.../evaluate/model.pt] [--runs 200]

All three run in one process on the same test images with 2 threads, interleaved in rounds so
machine drift hits all of them, with a pause between runtimes so one's idle-spinning threads do not
take the 2 cores from the next; PyTorch eager is the named baseline. The int8 vs fp32 ratio is also
reported per round, where both shared the machine's state. Also reports file sizes,
top-1 agreement int8 vs fp32 and macro-F1 of each on the frozen test set.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from core.onnx_runtime import cpu_facts, run_batched, session
from core.settings import apply_offline_defaults
from data_checks.images.manifest import load_dataset
from export.images.config import ExportConfig
from export.images.onnx import export_fp32
from export.images.stage import calibration_sample, int8_for_edge
from training.images.checkpoint import load_model
from training.images.config import SplitConfig
from training.images.data import split_indices, training_data
from training.images.metrics import macro_f1
from training.images.model import ProbabilityModel
from training.images.prepare import assign_split, read_split_manifest


def latest_checkpoint() -> Path:
    found = sorted(Path("artifacts").glob("**/evaluate/model.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit("no evaluated model under artifacts/; run `make demo` first or pass --checkpoint")
    return found[-1]


def demo_images(checkpoint: Path):
    """The checkpoint's model and the shipped tiles as the flow splits them (frozen test set, cached
    pixels): (model, data, split indices, grey images of shape (N, 1, S, S)).

    When the checkpoint sits in a flow run (artifacts/runs/<id>/evaluate/model.pt), its run's own
    split is used (checks/manifest_split.csv: after the quarantine and the near-duplicate group
    merges), so the calibration draw and the validation images are the ones the flow's export
    used and a benchmark export is the file the flow shipped. Otherwise all images on disk are
    split afresh (the same frozen test set; train/val may differ by the quarantined images).
    """
    model, _ = load_model(checkpoint)
    flow_split = checkpoint.parent.parent / "checks" / "manifest_split.csv"
    if flow_split.exists():
        manifest = read_split_manifest(flow_split)
    else:
        manifest = assign_split(
            load_dataset(Path("data/magnetic_tiles")).manifest, SplitConfig(), "magnetic_tiles"
        )
    data = training_data(manifest, list(model.spec.classes), model.spec.image_size, Path(".shopfloor/cache"))
    parts = split_indices(manifest)
    return model, data, parts, data.images[:, None].astype(np.float32)


def timed(run_one, images: np.ndarray, runs: int) -> list[float]:
    out = []
    for i in range(runs):
        x = images[i % len(images)][None]
        started = time.perf_counter()
        run_one(x)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--float-convs", type=int, default=ExportConfig().float_convs)
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = args.checkpoint or latest_checkpoint()
    model, data, parts, grey = demo_images(checkpoint)
    classes = list(model.spec.classes)
    test, labels = grey[parts["test"]], data.labels[parts["test"]]
    # The shipped settings unless --float-convs says otherwise.
    export = ExportConfig(float_convs=args.float_convs)
    calibration = calibration_sample(grey, parts["train"], export)
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = export_fp32(model, Path(scratch) / "fp32.onnx")
        int8 = int8_for_edge(model, calibration, Path(scratch) / "int8.onnx", export)
        sessions = {"onnxruntime_fp32": session(fp32), "onnxruntime_int8": session(int8)}
        shipped = ProbabilityModel(model).eval()
        runners = {
            "pytorch_fp32_eager": lambda x: shipped(torch.from_numpy(x)),
            "onnxruntime_fp32": lambda x: sessions["onnxruntime_fp32"].run(None, {"grey": x}),
            "onnxruntime_int8": lambda x: sessions["onnxruntime_int8"].run(None, {"grey": x}),
        }
        times: dict[str, list[float]] = {k: [] for k in runners}
        round_ratios = []  # int8 vs fp32 within one round: the pair shares the machine's state
        with torch.inference_mode():
            for _ in range(args.rounds):
                this_round = {}
                for name, run_one in runners.items():
                    time.sleep(0.5)  # let the previous runtime's spinning threads park: 2 cores only
                    timed(run_one, test, 5)  # warm
                    this_round[name] = timed(run_one, test, args.runs // args.rounds)
                    times[name] += this_round[name]
                round_ratios.append(
                    float(
                        np.median(this_round["onnxruntime_fp32"]) / np.median(this_round["onnxruntime_int8"])
                    )
                )
        p32, p8 = (
            run_batched(sessions["onnxruntime_fp32"], test),
            run_batched(sessions["onnxruntime_int8"], test),
        )
        sizes = {"onnx_fp32_bytes": fp32.stat().st_size, "onnx_int8_bytes": int8.stat().st_size}
    median = {k: float(np.median(v)) for k, v in times.items()}
    result = {
        "checkpoint": str(checkpoint), "measured_on": cpu_facts(), "image_size": model.spec.image_size, "threads": 2, "test_images": len(test),
        "float_convs": export.float_convs, "calibration": "minmax", "weight_range": "pair-safe", "weight_rounding": "gptq",
        "median_ms": median, "p95_ms": {k: float(np.percentile(v, 95)) for k, v in times.items()},
        "speedup_vs_pytorch_eager": {k: median["pytorch_fp32_eager"] / v for k, v in median.items()},
        "int8_speedup_vs_ort_fp32": median["onnxruntime_fp32"] / median["onnxruntime_int8"],
        "int8_speedup_vs_ort_fp32_per_round": round_ratios,
        **sizes, "int8_size_ratio": sizes["onnx_int8_bytes"] / sizes["onnx_fp32_bytes"],
        "top1_agreement": float((p32.argmax(1) == p8.argmax(1)).mean()),
        "macro_f1_fp32": macro_f1(labels, p32.argmax(1), len(classes)), "macro_f1_int8": macro_f1(labels, p8.argmax(1), len(classes)),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/onnx_speed.json").write_text(json.dumps(result, indent=2))
    with Path("benchmarks/results/onnx_speed.jsonl").open("a") as runs:  # every run, for the spread
        runs.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
