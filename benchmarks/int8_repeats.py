"""How much the int8 export's fidelity moves between repeats of the same export.

  python -m benchmarks.int8_repeats --seed 0 [--checkpoint .../evaluate/model.pt]

One export per call (a fresh process each time, as the flow does): fp32 ONNX, then the shipped
int8 path (GPTQ weight rounding, then static int8) with ExportConfig(seed=...), which draws the
calibration images.
Prints and appends one row to benchmarks/results/int8_repeats.jsonl: top-1 agreement with fp32,
flipped images, mean absolute probability error and macro-F1 of each precision, on the validation
part (where settings may be chosen) and on the frozen test part (scored only).

Why: the agreement bar is 99 % of 267 frozen images, i.e. at most 2 flips, and the images that
flip are near-ties; one export is one draw, and this measures the spread of draws.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.onnx_speed import demo_images, latest_checkpoint
from core.onnx_runtime import cpu_facts, run_batched, session
from core.settings import apply_offline_defaults
from export.images.config import ExportConfig
from export.images.onnx import export_fp32
from export.images.stage import calibration_sample, int8_for_edge
from training.images.metrics import macro_f1


def fidelity(p32: np.ndarray, p8: np.ndarray, labels: np.ndarray, classes: int) -> dict:
    flips = int((p32.argmax(1) != p8.argmax(1)).sum())
    return {
        "agreement": 1 - flips / len(p32),
        "flips": flips,
        "mean_abs_probability_error": float(np.abs(p32 - p8).mean()),
        "macro_f1_fp32": macro_f1(labels, p32.argmax(1), classes),
        "macro_f1_int8": macro_f1(labels, p8.argmax(1), classes),
    }


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--float-convs", type=int, default=ExportConfig().float_convs)
    parser.add_argument("--tag", default="", help="what differs in this code version, stored with the row")
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = args.checkpoint or latest_checkpoint()
    model, data, parts, grey = demo_images(checkpoint)
    classes = list(model.spec.classes)
    cfg = ExportConfig(seed=args.seed, float_convs=args.float_convs)
    calibration = calibration_sample(grey, parts["train"], cfg)
    row = {"checkpoint": str(checkpoint), "seed": args.seed, "weight_rounding": "gptq"}
    row |= {"float_convs": args.float_convs, "measured_on": cpu_facts()}
    row |= {"tag": args.tag} if args.tag else {}
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = export_fp32(model, Path(scratch) / "fp32.onnx")
        int8 = int8_for_edge(model, calibration, Path(scratch) / "int8.onnx", cfg)
        for part in ("val", "test"):
            x, labels = grey[parts[part]], data.labels[parts[part]]
            p32, p8 = run_batched(session(fp32), x), run_batched(session(int8), x)
            row[part] = fidelity(p32, p8, labels, len(classes))
    print(json.dumps(row), flush=True)
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    with Path("benchmarks/results/int8_repeats.jsonl").open("a") as out:
        out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
