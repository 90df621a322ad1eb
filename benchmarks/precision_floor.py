"""How close to fp32 any cheaper precision gets on the demo model, next to the int8 export.

  python -m benchmarks.precision_floor [--seed 0] [--checkpoint .../evaluate/model.pt]

Why: the int8 bar asks for top-1 agreement >= 99 % with fp32 on the 267 frozen images (at most
2 flips), and the images that flip are near-ties of the fp32 model. This puts the int8 file's
figures beside references that nobody would call lossy: the same PyTorch model run in float16
and in bfloat16, and fp32 with every weight scaled by (1 + sigma * N(0, 1)) (a few draws). Then
a PyTorch simulation of the int8 file (GPTQ-rounded weights, uint8 activations with the
calibrated ranges) says where its error comes from: with the mask head's attention taken from
fp32, and with the first stages kept float.

One process, the same images for every row. PyTorch rows are compared with PyTorch fp32; the
ONNX int8 row with the fp32 ONNX file (the two fp32 references differ by < 1e-4). Prints and
appends one row to benchmarks/results/precision_floor.jsonl; settings would be chosen on the
validation part only, the frozen test part is scored.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.int8_repeats import fidelity
from benchmarks.onnx_speed import demo_images, latest_checkpoint
from flows.settings import apply_offline_defaults
from registry.config import ExportConfig
from registry.export import calibration_sample, int8_for_edge
from registry.onnx_export import export_fp32, run_onnx, session
from registry.onnx_runtime import cpu_facts
from registry.quant_aware import activation_rounding_points, conv_bn_pairs, round_activations
from registry.weight_rounding import round_weights_for_int8
from training.model import DefectClassifier


def probabilities(model: DefectClassifier, grey: np.ndarray, dtype=torch.float32, before=None) -> np.ndarray:
    """Softmax outputs in batches; `before(batch)` runs first on each batch (to pair two models)."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(grey), 32):
            batch = torch.from_numpy(grey[start : start + 32])
            if before is not None:
                before(batch)
            out.append(model(batch.to(dtype)).float().softmax(1))
    return torch.cat(out).numpy()


def top2_margins(p: np.ndarray) -> dict:
    ordered = np.sort(p, 1)
    margin = ordered[:, -1] - ordered[:, -2]
    return {f"below_{t}": int((margin < t).sum()) for t in (0.01, 0.02, 0.05)}


def with_weight_noise(model: DefectClassifier, sigma: float, seed: int) -> DefectClassifier:
    noisy = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in noisy.parameters():
            parameter.mul_(1 + sigma * torch.randn(parameter.shape, generator=generator))
    return noisy


def int8_simulation(
    model: DefectClassifier,
    rounded: DefectClassifier,
    calibration: np.ndarray,
    float_convs: int,
    float_stages: int = 0,
) -> DefectClassifier:
    """The GPTQ-rounded copy with uint8 activations, its first `float_stages` stages back in fp32."""
    student = copy.deepcopy(rounded).eval()
    float_prefixes = tuple(f"blocks.{i}." for i in range(float_stages))
    originals = {name: conv for name, conv, _ in conv_bn_pairs(model.net)}
    with torch.no_grad():
        for name, conv, _ in conv_bn_pairs(student.net):
            if name.startswith(float_prefixes):
                conv.weight.copy_(originals[name].weight)
    names = {module: name for name, module in student.net.named_modules()}
    points = [
        m
        for m in activation_rounding_points(student, float_convs)
        if not (names[m] + ".").startswith(float_prefixes)
    ]
    round_activations(student, points, calibration)
    return student


def with_fp32_attention(model: DefectClassifier, simulated: DefectClassifier, grey: np.ndarray) -> np.ndarray:
    """The simulation's probabilities with its mask head's logits replaced by the fp32 model's."""
    fp32_mask = {}
    recorder = model.mask_head.register_forward_hook(lambda _m, _i, out: fp32_mask.update(logits=out))
    swap = simulated.mask_head.register_forward_hook(lambda _m, _i, _out: fp32_mask["logits"])
    try:
        return probabilities(simulated, grey, before=model)
    finally:
        recorder.remove()
        swap.remove()


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0, help="calibration draw of the int8 export")
    parser.add_argument("--sigma", type=float, default=1e-3, help="relative weight noise of the fp32 draws")
    parser.add_argument("--draws", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = args.checkpoint or latest_checkpoint()
    model, data, parts, grey = demo_images(checkpoint)
    model.eval()
    classes = len(model.spec.classes)
    cfg = ExportConfig(seed=args.seed)
    calibration = calibration_sample(grey, parts["train"], cfg)
    rounded, _ = round_weights_for_int8(model, calibration, cfg)
    row = {"checkpoint": str(checkpoint), "seed": args.seed, "sigma": args.sigma, "measured_on": cpu_facts()}
    simulations = {
        stages: int8_simulation(model, rounded, calibration, cfg.float_convs, stages) for stages in (0, 2, 4)
    }
    with tempfile.TemporaryDirectory() as scratch:
        fp32_onnx = export_fp32(model, Path(scratch) / "fp32.onnx")
        int8_onnx = int8_for_edge(
            model, fp32_onnx, grey[parts["train"]], calibration, Path(scratch) / "int8.onnx", cfg
        )
        for part in ("val", "test"):
            x, labels = grey[parts[part]], data.labels[parts[part]]
            p32 = probabilities(model, x)
            result = {"images": len(x), "fp32_top2_margin": top2_margins(p32)}
            result["int8_onnx"] = fidelity(run_onnx(session(fp32_onnx), x), run_onnx(session(int8_onnx), x), labels, classes)  # fmt: skip
            for name, dtype in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
                result[name] = fidelity(
                    p32, probabilities(copy.deepcopy(model).to(dtype), x, dtype), labels, classes
                )
            noisy = [
                fidelity(p32, probabilities(with_weight_noise(model, args.sigma, s), x), labels, classes)
                for s in range(args.draws)
            ]
            result["fp32_weight_noise"] = {
                "flips": [n["flips"] for n in noisy],
                "mean_abs_probability_error": [round(n["mean_abs_probability_error"], 5) for n in noisy],
            }
            for stages, simulated in simulations.items():
                result[f"int8_simulation_float_stages_{stages}"] = fidelity(p32, probabilities(simulated, x), labels, classes)  # fmt: skip
            if model.spec.mask_pooling:  # the attention from fp32, the rest int8
                p8 = with_fp32_attention(model, simulations[0], x)
                result["int8_simulation_fp32_attention"] = fidelity(p32, p8, labels, classes)
            row[part] = result
            print(part, json.dumps(result), flush=True)
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    with Path("benchmarks/results/precision_floor.jsonl").open("a") as out:
        out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
