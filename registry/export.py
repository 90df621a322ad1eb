"""Stage function `export_edge_models`: fp32 + int8 ONNX, measured on the evaluation set, with a model card.

The numbers the promotion gate needs are measured here on the artefact that ships: top-1
agreement int8 vs fp32, macro-F1 of each, file sizes, and batch-1 CPU latency (median, p95).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from registry.config import ExportConfig  # noqa: F401  (re-exported: the stage and its settings)
from registry.equalize import equalize_for_int8
from registry.onnx_export import (
    OPSET,
    check_kernel_saturation,
    check_parity,
    export_fp32,
    quantize_int8,
    run_onnx,
    session,
    write_metadata,
)
from registry.onnx_runtime import cpu_facts
from registry.quant_aware import distill_for_int8
from registry.weight_rounding import round_weights_for_int8
from training.checkpoint import load_model
from training.metrics import macro_f1
from training.model import ProbabilityModel
from training.preprocess import RESIZE
from training.train import split_indices, training_data


@dataclass(frozen=True)
class PrecisionMetrics:
    macro_f1: float
    size_bytes: int
    latency_ms_median: float
    latency_ms_p95: float


@dataclass(frozen=True)
class ExportReport:
    fp32_path: Path
    int8_path: Path
    card_path: Path
    parity_max_abs: float
    top1_agreement: float  # int8 vs fp32 on the evaluation set
    fp32: PrecisionMetrics
    int8: PrecisionMetrics
    eval_images: int

    @classmethod
    def from_folder(cls, folder: Path) -> ExportReport:
        """Rebuild the report from an export folder (the DVC path passes files, not objects)."""
        from registry.onnx_export import read_card

        card = read_card(folder / "model.int8.onnx")["metrics"]
        fp32 = PrecisionMetrics(**card["onnx_fp32"])
        int8 = PrecisionMetrics(
            **{k: v for k, v in card["onnx_int8"].items() if k != "top1_agreement_with_fp32"}
        )
        agreement = card["onnx_int8"]["top1_agreement_with_fp32"]
        return cls(
            folder / "model.fp32.onnx",
            folder / "model.int8.onnx",
            folder / "model_card.json",
            card.get("parity_max_abs", 0.0),
            agreement,
            fp32,
            int8,
            card["evaluation_images"],
        )

    def flat(self) -> dict[str, float]:
        out = {"export_top1_agreement": self.top1_agreement, "export_parity_max_abs": self.parity_max_abs}
        for name in ("fp32", "int8"):
            for key, value in asdict(getattr(self, name)).items():
                out[f"onnx_{name}_{key}"] = float(value)
        out["int8_macro_f1_drop"] = self.fp32.macro_f1 - self.int8.macro_f1
        return out


def batch1_latency_ms(run_one, grey: np.ndarray, runs: int) -> tuple[float, float]:
    """Median and p95 wall time of single-image calls, after two warm-up calls."""
    for i in range(2):
        run_one(grey[i % len(grey)][None])
    times = []
    for i in range(runs):
        start = time.perf_counter()
        run_one(grey[i % len(grey)][None])
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.percentile(times, 95))


def _measure(
    path: Path, grey: np.ndarray, labels: np.ndarray, num_classes: int, cfg: ExportConfig
) -> tuple[PrecisionMetrics, np.ndarray]:
    sess = session(path, cfg.threads)
    proba = run_onnx(sess, grey)
    median, p95 = batch1_latency_ms(lambda x: sess.run(None, {"grey": x}), grey, cfg.latency_runs)
    return PrecisionMetrics(
        macro_f1(labels, proba.argmax(1), num_classes), path.stat().st_size, median, p95
    ), proba


def model_card(spec, decision: dict, metrics: dict, lineage: dict) -> dict:
    return {
        "classes": list(spec.classes),
        "input": {
            "name": "grey", "dtype": "float32", "shape": ["batch", 1, spec.image_size, spec.image_size],
            "image_size": spec.image_size, "values": "8-bit grey levels 0..255 (colour images: convert to luminance)",
            "resize": RESIZE, "normalisation": "inside the model",
        },
        "output": {"name": "probabilities", "shape": ["batch", len(spec.classes)]},
        "decision": decision | {"rule": "reject the part when 1 - p(ok_class) >= defect_threshold; its defect class is the argmax"},
        "backbone": spec.backbone,
        "metrics": metrics,
        "lineage": lineage,
        "export": {
            "opset": OPSET,
            "int8": "static QDQ, per-channel int8 weights, uint8 activations, calibrated on training images; "
            "weights from a copy of the model, residual streams rescaled (same function) when equalize_alpha is "
            "set, distilled to match the fp32 model under int8 rounding when quant_aware_epochs > 0, and "
            "rounded to the int8 grid by GPTQ (each layer's output on the calibration images moves least) "
            "when weight_rounding is 'gptq'",
        },
    }  # fmt: skip


def int8_for_edge(
    model,
    fp32_path: Path,
    train_grey: np.ndarray,
    calibration_grey: np.ndarray,
    path: Path,
    cfg: ExportConfig,
) -> Path:
    """The int8 file as shipped: quantized from the fp32 export, or from a copy of the model made
    int8-friendly first: stream-equalized with `equalize_alpha` (registry/equalize.py), distilled
    to match it under int8 rounding with `quant_aware_epochs` (registry/quant_aware.py), then its
    weights GPTQ-rounded onto the int8 grid (`weight_rounding`, registry/weight_rounding.py)."""
    source_model, weight_scales = model, None
    if cfg.equalize_alpha is not None:
        source_model = equalize_for_int8(source_model, calibration_grey, cfg.equalize_alpha)
    if cfg.quant_aware_epochs:
        source_model = distill_for_int8(source_model, train_grey, calibration_grey, cfg)
    if cfg.weight_rounding == "gptq":
        source_model, scales = round_weights_for_int8(source_model, calibration_grey, cfg)
        weight_scales = {f"classifier.net.{name}.weight": s for name, s in scales.items()}  # ONNX names
    if source_model is model:
        return quantize_int8(fp32_path, calibration_grey, path, cfg)
    source = export_fp32(source_model, path.with_name(path.stem + ".source.onnx"))
    try:
        return quantize_int8(source, calibration_grey, path, cfg, weight_scales)
    finally:
        source.unlink(missing_ok=True)


def calibration_sample(grey: np.ndarray, train_index: np.ndarray, cfg: ExportConfig) -> np.ndarray:
    """The calibration images: `cfg.calibration_images` drawn from the training part with `cfg.seed`
    (never from test), so the flow and the benchmarks calibrate on the same draw."""
    return grey[np.random.default_rng(cfg.seed).permutation(train_index)[: cfg.calibration_images]]


def export_edge_models(
    model_path: Path,
    manifest,
    classes: list[str],
    cfg: ExportConfig,
    out_dir: Path,
    cache_dir: Path | None,
    lineage: dict,
) -> ExportReport:
    """Export, verify and measure; write `model.fp32.onnx`, `model.int8.onnx` and `model_card.json`."""
    model, payload = load_model(model_path)
    data = training_data(manifest, classes, model.spec.image_size, cache_dir)
    parts = split_indices(manifest)
    grey = data.images[:, None].astype(np.float32)  # (N, 1, S, S) grey levels
    calibration = calibration_sample(grey, parts["train"], cfg)
    test, labels = grey[parts["test"]], data.labels[parts["test"]]

    fp32_path = export_fp32(model, out_dir / "model.fp32.onnx")
    parity = check_parity(model, fp32_path, test[:64], cfg.parity_atol)
    int8_path = int8_for_edge(
        model, fp32_path, grey[parts["train"]], calibration, out_dir / "model.int8.onnx", cfg
    )
    saturation_gap = check_kernel_saturation(
        int8_path, np.concatenate([calibration[:16], test[:16]]), cfg.threads
    )
    fp32, fp32_proba = _measure(fp32_path, test, labels, len(classes), cfg)
    int8, int8_proba = _measure(int8_path, test, labels, len(classes), cfg)
    agreement = float((fp32_proba.argmax(1) == int8_proba.argmax(1)).mean())

    shipped = ProbabilityModel(model).eval()
    with torch.inference_mode():
        torch_median, torch_p95 = batch1_latency_ms(
            lambda x: shipped(torch.from_numpy(x)), test, cfg.latency_runs
        )
    metrics = {
        "pytorch_fp32": {
            "macro_f1": payload.get("metrics", {}).get("test", {}).get("macro_f1"),
            "latency_ms_median": torch_median,
            "latency_ms_p95": torch_p95,
        },
        "onnx_fp32": asdict(fp32),
        "onnx_int8": asdict(int8) | {"top1_agreement_with_fp32": agreement},
        "int8_quantization": cfg.model_dump(
            include={
                "calibration_images",
                "calibration_method",
                "float_convs",
                "weight_range",
                "quant_aware_epochs",
                "equalize_alpha",
                "quant_aware_lr",
                "weight_rounding",
            }
        )
        | {"kernel_saturation_gap": saturation_gap},
        "evaluation_images": len(test),
        "parity_max_abs": parity,
        "measured_on": cpu_facts(),  # latencies and the kernel check hold for this CPU only
    }
    card = model_card(model.spec, payload.get("decision") or {}, metrics, lineage)
    for path in (fp32_path, int8_path):
        write_metadata(path, card | {"precision": "int8" if path == int8_path else "fp32"})
    card_path = out_dir / "model_card.json"
    card_path.write_text(json.dumps(card, indent=2, default=str))
    return ExportReport(fp32_path, int8_path, card_path, parity, agreement, fp32, int8, len(test))
