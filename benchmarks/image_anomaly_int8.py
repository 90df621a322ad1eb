"""Does the image anomaly model survive int8? The PatchCore file with its backbone convolutions quantized
(static QDQ, per-channel int8 weights, uint8 activations calibrated on good training images; the first
convolutions, the nearest-bank search and the map in float) against the fp32 file that ships.

  python -m benchmarks.image_anomaly_int8 [--lines tiles ball_screw]

Protocol: the flow's split for each line (its frozen test parts, validation carved from the rest), PatchCore
defaults, threshold from validation good images for 5 % false rejects, set separately for each file (as the
flow would); test AUROC, defect recall and false rejects, the share of test images whose decision differs,
and batch-1 latency (median of 3 interleaved rounds of 20 calls, int8 / fp32 in the same process).
Writes benchmarks/results/image_anomaly_int8.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from core.onnx_runtime import run_batched, session
from core.settings import apply_offline_defaults
from data_checks.images.manifest import load_dataset
from export.images.int8 import _Calibration, float_nodes
from export.images.patchcore import export_onnx
from inputs.images import channels_first, looks_colour
from training.images.anomaly import anomaly_images, fit_image_anomaly, part_figures
from training.images.config import PatchCoreConfig, SplitConfig
from training.images.patchcore import threshold_for
from training.images.prepare import assign_split

OUT = Path("benchmarks/results/image_anomaly_int8.json")
LINES = {"tiles": (Path("data/magnetic_tiles"), "MT_Free", "magnetic_tiles"),
         "ball_screw": (Path("data/ball_screw/ball_screw.csv"), "good", "ball_screw")}  # fmt: skip


def quantize(fp32: Path, calibration: np.ndarray, path: Path) -> Path:
    prepared = path.with_name("prep.onnx")
    logging.getLogger("root").setLevel(logging.ERROR)
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(path), _Calibration(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
        nodes_to_exclude=float_nodes(onnx.load(str(prepared)), 3), calibrate_method=CalibrationMethod.MinMax,
    )  # fmt: skip
    return path


def latency_ratio(int8: Path, fp32: Path, pixels: np.ndarray) -> dict:
    runs = {"int8": [], "fp32": []}
    sessions = {"int8": session(int8), "fp32": session(fp32)}
    for _ in range(3):
        for name, sess in sessions.items():
            x = pixels[:1]
            sess.run(None, {"grey": x})
            started = time.perf_counter()
            for i in range(20):
                sess.run(None, {"grey": pixels[i % len(pixels)][None]})
            runs[name].append((time.perf_counter() - started) / 20 * 1000)
    medians = {k: float(np.median(v)) for k, v in runs.items()}
    return medians | {"int8_over_fp32": medians["int8"] / medians["fp32"]}


def run_line(line: str) -> dict:
    data_path, good_class, frozen_name = LINES[line]
    manifest = assign_split(load_dataset(data_path).manifest, SplitConfig(), frozen_name)
    colour = looks_colour(manifest["path"].tolist())
    data = anomaly_images(manifest, good_class, 224, Path(".shopfloor/cache"), colour)
    cfg = PatchCoreConfig(colour=colour)
    fitted = fit_image_anomaly(cfg, data)
    val_good, test = data.part("val", good=True), data.part("test")
    pixels = channels_first(data.images)
    result = {"input": "RGB" if colour else "grey"}
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = export_onnx(fitted.scorer, Path(scratch) / "fp32.onnx", 224, channels=pixels.shape[1])
        int8 = quantize(fp32, pixels[data.part("train", good=True)][:128], Path(scratch) / "int8.onnx")
        scores = {}
        for name, path in (("fp32", fp32), ("int8", int8)):
            val_scores = run_batched(session(path), pixels[val_good], batch=16)
            threshold = threshold_for(val_scores, cfg.target_false_reject_rate)
            scores[name] = run_batched(session(path), pixels[test], batch=16)
            figures = part_figures(scores[name], data.good[test], threshold)
            result[name] = figures.__dict__ | {"threshold": threshold, "size_mb": path.stat().st_size / 1e6}
        decisions = [scores[n] > result[n]["threshold"] for n in ("fp32", "int8")]
        result["decisions_differ"] = float(np.mean(decisions[0] != decisions[1]))
        result["score_max_relative_gap"] = float(
            np.max(np.abs(scores["int8"] - scores["fp32"]) / np.abs(scores["fp32"]).max())
        )
        result["latency_ms"] = latency_ratio(int8, fp32, pixels[test[:16]])
    print(line, json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", nargs="*", default=list(LINES), choices=list(LINES))
    args = parser.parse_args()
    apply_offline_defaults()
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    for line in args.lines:
        result[line] = run_line(line)
        result["machine"] = {
            "cpu_count": os.cpu_count(),
            "load_average": [round(x, 1) for x in os.getloadavg()],
        }
        OUT.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
