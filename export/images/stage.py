"""Stage function `export_edge_models`: fp32 + int8 ONNX, verified, measured, with their model card.

The numbers the promotion gate needs are measured here on the artefact that ships: top-1
agreement int8 vs fp32, macro-F1 of each, file sizes, and batch-1 CPU latency (median, p95), on
the held-out test images. The same run of the int8 file gives the card's reference statistics
(class mix, confidence and entropy histograms): what a drift monitor compares devices against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from core.card import read_card
from core.onnx_runtime import cpu_facts, session
from export.images.card import model_card, output_reference
from export.images.config import ExportConfig
from export.images.gptq import round_weights_for_int8
from export.images.int8 import check_kernel_saturation, quantize_int8
from export.images.onnx import INPUT, check_parity, export_fp32, fit_projection, shipped_module
from export.metadata import save_card, write_card
from inputs.images import channels_first
from training.images.checkpoint import load_model
from training.images.data import split_indices, training_data
from training.images.metrics import macro_f1, operating_point
from training.images.model import DefectClassifier
from training.images.reject_rule import reject_table

EMBEDDING_FIT_IMAGES = 512  # training images the embedding's PCA is fitted on


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
        metrics = read_card(folder / "model.int8.onnx")["metrics"]
        int8 = {k: v for k, v in metrics["onnx_int8"].items() if k != "top1_agreement_with_fp32"}
        return cls(
            folder / "model.fp32.onnx", folder / "model.int8.onnx", folder / "model_card.json",
            metrics.get("parity_max_abs", 0.0), metrics["onnx_int8"]["top1_agreement_with_fp32"],
            PrecisionMetrics(**metrics["onnx_fp32"]), PrecisionMetrics(**int8), metrics["evaluation_images"],
        )  # fmt: skip

    def flat(self) -> dict[str, float]:
        out = {"export_top1_agreement": self.top1_agreement, "export_parity_max_abs": self.parity_max_abs}
        for name in ("fp32", "int8"):
            for key, value in asdict(getattr(self, name)).items():
                out[f"onnx_{name}_{key}"] = float(value)
        out["int8_macro_f1_drop"] = self.fp32.macro_f1 - self.int8.macro_f1
        return out


def batch1_latency_ms(run_one, grey: np.ndarray, runs: int) -> tuple[float, float]:
    """Median and p95 wall time of single-image calls, after two warm-up calls."""
    import time

    for i in range(2):
        run_one(grey[i % len(grey)][None])
    times = []
    for i in range(runs):
        start = time.perf_counter()
        run_one(grey[i % len(grey)][None])
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.percentile(times, 95))


def run_all(sess, grey: np.ndarray, batch: int = 32) -> list[np.ndarray]:
    """Every output of an exported file on `grey`, batched: [probabilities (N, C), embedding (N, E)]."""
    parts = [sess.run(None, {INPUT: grey[i : i + batch]}) for i in range(0, len(grey), batch)]
    return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]


def measure_file(path: Path, grey: np.ndarray, labels: np.ndarray, num_classes: int,
                 cfg: ExportConfig) -> tuple[PrecisionMetrics, list[np.ndarray]]:  # fmt: skip
    """Macro-F1, size and batch-1 latency of one exported file, and its outputs on `grey`."""
    sess = session(path, cfg.threads)
    outputs = run_all(sess, grey)
    median, p95 = batch1_latency_ms(lambda x: sess.run(None, {INPUT: x}), grey, cfg.latency_runs)
    f1 = macro_f1(labels, outputs[0].argmax(1), num_classes)
    return PrecisionMetrics(f1, path.stat().st_size, median, p95), outputs


def int8_for_edge(model: DefectClassifier, calibration_grey: np.ndarray, path: Path, cfg: ExportConfig,
                  projection: tuple[np.ndarray, np.ndarray] | None = None) -> Path:  # fmt: skip
    """The int8 file as shipped: a copy of the model with GPTQ-rounded weights (export.images.gptq),
    exported (with the embedding `projection`, kept float) and quantized with exactly those integers
    (each convolution's scales passed on)."""
    rounded, scales = round_weights_for_int8(model, calibration_grey, cfg)
    weight_scales = {f"classifier.net.{name}.weight": s for name, s in scales.items()}  # ONNX names
    source = export_fp32(rounded, path.with_name(path.stem + ".source.onnx"), projection)
    try:
        return quantize_int8(source, calibration_grey, path, cfg, weight_scales)
    finally:
        source.unlink(missing_ok=True)


def calibration_sample(grey: np.ndarray, train_index: np.ndarray, cfg: ExportConfig) -> np.ndarray:
    """The calibration images: `cfg.calibration_images` drawn from the training part with `cfg.seed`
    (never from test), so the flow and the benchmarks calibrate on the same draw."""
    return grey[np.random.default_rng(cfg.seed).permutation(train_index)[: cfg.calibration_images]]


def pytorch_latency(
    model: DefectClassifier, test: np.ndarray, runs: int, projection=None
) -> tuple[float, float]:
    """Batch-1 latency of the PyTorch model as shipped (softmax and embedding included): the baseline
    the ONNX files are compared to."""
    shipped = shipped_module(model, projection)
    with torch.inference_mode():
        return batch1_latency_ms(lambda x: shipped(torch.from_numpy(x)), test, runs)


def reject_measurements(decision: dict, classes: list[str], proba: np.ndarray, labels: np.ndarray) -> dict:
    """The shipped file's operating point and its recall vs false-reject table on the held-out test part:
    what a line manager picks another threshold from (`registry set-threshold`)."""
    ok, threshold = decision.get("ok_class"), decision.get("defect_threshold")
    if ok not in classes or threshold is None:
        return {}
    point = operating_point(labels, proba, classes.index(ok), threshold)
    return {"operating_point": asdict(point) | {"measured_on": "held-out test parts, this file"},
            "reject_table": reject_table(labels, proba, classes.index(ok)) | {"measured_on": "held-out test parts, this file"}}  # fmt: skip


def export_edge_models(model_path: Path, manifest, classes: list[str], cfg: ExportConfig, out_dir: Path,
                       cache_dir: Path | None, lineage: dict) -> ExportReport:  # fmt: skip
    """Export, verify and measure; write `model.fp32.onnx`, `model.int8.onnx` and `model_card.json`."""
    model, payload = load_model(model_path)
    data = training_data(manifest, classes, model.spec.image_size, cache_dir, model.spec.channels == 3)
    parts = split_indices(manifest)
    grey = channels_first(data.images)  # (N, C, S, S) grey levels, or RGB for a colour line
    calibration = calibration_sample(grey, parts["train"], cfg)
    test, labels = grey[parts["test"]], data.labels[parts["test"]]

    projection = fit_projection(model, grey[parts["train"]][:EMBEDDING_FIT_IMAGES])
    fp32_path = export_fp32(model, out_dir / "model.fp32.onnx", projection)
    parity = check_parity(model, fp32_path, test[:64], cfg.parity_atol, projection)
    int8_path = int8_for_edge(model, calibration, out_dir / "model.int8.onnx", cfg, projection)
    saturation_gap = check_kernel_saturation(
        int8_path, np.concatenate([calibration[:16], test[:16]]), cfg.threads
    )
    fp32, (fp32_proba, _) = measure_file(fp32_path, test, labels, len(classes), cfg)
    int8, (int8_proba, int8_embedding) = measure_file(int8_path, test, labels, len(classes), cfg)
    agreement = float((fp32_proba.argmax(1) == int8_proba.argmax(1)).mean())
    torch_median, torch_p95 = pytorch_latency(model, test, cfg.latency_runs, projection)
    metrics = {
        "pytorch_fp32": {"macro_f1": payload.get("metrics", {}).get("test", {}).get("macro_f1"),
                         "latency_ms_median": torch_median, "latency_ms_p95": torch_p95},
        "onnx_fp32": asdict(fp32),
        "onnx_int8": asdict(int8) | {"top1_agreement_with_fp32": agreement},
        "int8_quantization": cfg.model_dump(include={"calibration_images", "float_convs"})
        | {"weights": "pair-safe, GPTQ-rounded", "kernel_saturation_gap": saturation_gap},
        "evaluation_images": len(test),
        "parity_max_abs": parity,
        "measured_on": cpu_facts(),  # latencies and the kernel check hold for this CPU only
    }  # fmt: skip
    decision = payload.get("decision") or {}
    reference = output_reference(int8_proba, int8_embedding)
    card = model_card(model.spec, decision, metrics | reject_measurements(decision, classes, int8_proba, labels),
                      lineage, reference)  # fmt: skip
    for path, precision in ((fp32_path, "fp32"), (int8_path, "int8")):
        write_card(path, card | {"export": card["export"] | {"precision": precision}})
    card_path = save_card(
        card | {"export": card["export"] | {"precision": "int8"}}, out_dir / "model_card.json"
    )
    return ExportReport(fp32_path, int8_path, card_path, parity, agreement, fp32, int8, len(test))
