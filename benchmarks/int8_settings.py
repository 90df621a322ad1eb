"""Which int8 settings keep the quantized model faithful: float convolutions x calibration x weight range.

  python -m benchmarks.int8_settings [--checkpoint .../evaluate/model.pt]

For each setting, quantize the same fp32 export and measure, on the validation part (never the
test part: this benchmark chooses ExportConfig defaults), top-1 agreement with fp32, the mean
absolute probability error (finer than agreement, which one image in 160 moves), the file
size and the batch-1 latency. The defaults in registry/config.py ExportConfig come from here;
the shipped figures on the test part come from benchmarks/onnx_speed.py.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.onnx_speed import demo_images, latest_checkpoint, timed
from flows.settings import apply_offline_defaults
from registry.config import ExportConfig
from registry.export import calibration_sample, int8_for_edge
from registry.onnx_export import export_fp32, kernel_saturation_gap, run_onnx, session

# (float convolutions, calibration method, weight range, quantization-aware distillation epochs,
#  residual-stream equalization alpha (None: off), weight rounding)
SETTINGS = [
    (3, "minmax", "full", 0, None, "nearest"), (3, "minmax", "reduced", 0, None, "nearest"), (3, "percentile", "reduced", 0, None, "nearest"),
    (3, "minmax", "pair-safe", 0, None, "nearest"), (3, "percentile", "pair-safe", 0, None, "nearest"), (3, "entropy", "pair-safe", 0, None, "nearest"),
    (6, "minmax", "pair-safe", 0, None, "nearest"), (1, "minmax", "pair-safe", 0, None, "nearest"), (0, "minmax", "pair-safe", 0, None, "nearest"),
    (3, "minmax", "pair-safe", 0, 0.25, "nearest"), (3, "minmax", "pair-safe", 0, 0.5, "nearest"), (3, "minmax", "pair-safe", 0, 0.75, "nearest"),
    (3, "minmax", "pair-safe", 1, None, "nearest"), (3, "minmax", "pair-safe", 2, None, "nearest"), (3, "minmax", "pair-safe", 1, 0.5, "nearest"),
    (3, "minmax", "pair-safe", 1, 0.75, "nearest"), (6, "minmax", "pair-safe", 1, None, "nearest"), (9, "minmax", "pair-safe", 1, None, "nearest"),
    (12, "minmax", "pair-safe", 1, None, "nearest"),
    (3, "minmax", "pair-safe", 0, None, "gptq"), (3, "minmax", "pair-safe", 0, 0.5, "gptq"),
    (3, "minmax", "pair-safe", 0, 0.75, "gptq"), (3, "minmax", "pair-safe", 1, None, "gptq"),
]  # fmt: skip


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="skip the distillation rows (minutes each)")
    parser.add_argument(
        "--rows", type=str, default="", help="comma-separated SETTINGS indices to run (default: all)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8_settings.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = args.checkpoint or latest_checkpoint()
    model, _data, parts, grey = demo_images(checkpoint)
    calibration = calibration_sample(grey, parts["train"], ExportConfig())
    val = grey[parts["val"]]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = export_fp32(model, Path(scratch) / "fp32.onnx")
        reference = run_onnx(session(fp32), val)
        sess32 = session(fp32)
        run32 = lambda x: sess32.run(None, {"grey": x})  # noqa: E731
        timed(run32, val, 5)  # warm
        chosen = [int(i) for i in args.rows.split(",")] if args.rows else range(len(SETTINGS))
        for float_convs, method, weight_range, epochs, alpha, rounding in (SETTINGS[i] for i in chosen):
            if args.quick and epochs:
                continue
            path = (
                Path(scratch) / f"int8-{float_convs}-{method}-{weight_range}-{epochs}-{alpha}-{rounding}.onnx"
            )
            settings = ExportConfig(
                float_convs=float_convs, calibration_method=method, weight_range=weight_range,
                quant_aware_epochs=epochs, equalize_alpha=alpha, weight_rounding=rounding,
            )  # fmt: skip
            int8_for_edge(model, fp32, grey[parts["train"]], calibration, path, settings)
            sess = session(path)
            probabilities = run_onnx(sess, val)
            agreement = float((probabilities.argmax(1) == reference.argmax(1)).mean())
            error = float(np.abs(probabilities - reference).mean())
            run8 = lambda x, s=sess: s.run(None, {"grey": x})  # noqa: E731
            timed(run8, val, 5)
            fp32_times, int8_times = [], []
            for _ in range(4):  # interleaved, so machine drift hits both
                fp32_times += timed(run32, val, args.runs // 4)
                int8_times += timed(run8, val, args.runs // 4)
            fp32_ms, ms = float(np.median(fp32_times)), float(np.median(int8_times))
            row = {
                "float_convs": float_convs, "calibration": method, "weight_range": weight_range,
                "quant_aware_epochs": epochs, "equalize_alpha": alpha, "weight_rounding": rounding,
                "kernel_saturation_gap": kernel_saturation_gap(path, val[:32]),
                "val_top1_agreement": agreement, "val_mean_abs_probability_error": error,
                "size_ratio": path.stat().st_size / fp32.stat().st_size, "median_ms": ms, "fp32_median_ms": fp32_ms,
                "speedup_vs_ort_fp32": fp32_ms / ms,
            }  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {
        "checkpoint": str(checkpoint),
        "val_images": len(val),
        "settings": rows,
    }
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
