"""The PatchCore scorer (training.images.patchcore) as an ONNX file devices run: input `grey`
(N, 1, S, S) in 0..255, outputs `score` (N,) and `anomaly_map` (N, 1, S, S), batch axis dynamic;
checked by onnx.checker and against PyTorch in ONNX Runtime, with its card (core.card, kind
`image-anomaly`) written into it.

fp32: int8 backbone convolutions were measured and not adopted (batch-1 latency int8 / fp32 0.99-1.02 on
2 cores, AUROC 0.01 lower, 3-6 % of decisions changed: RESULTS.md, benchmarks/image_anomaly_int8.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.card import IMAGE_ANOMALY, new_card
from core.onnx_runtime import run_batched, session
from export.images.card import VALUES
from export.images.onnx import INPUT, parity_gap
from export.images.stage import batch1_latency_ms
from export.metadata import save_card, write_card
from export.torch_onnx import export_dynamic_batch
from inputs.images import RESIZE, channels_first
from training.images.anomaly import AnomalyImages, FittedAnomalyModel, part_figures
from training.images.patchcore import PatchCoreConfig, PatchCoreScorer

SCORE, ANOMALY_MAP = "score", "anomaly_map"  # input: INPUT, as the classifier's
OPSET = 18  # as export/images/onnx.py: asking for 17 yields 18 anyway


def export_onnx(
    scorer: PatchCoreScorer, path: Path, image_size: int, max_batch: int = 256, channels: int = 1
) -> Path:
    """Export and check the file's structure (onnx.checker, full)."""
    import onnx

    example = torch.full((2, channels, image_size, image_size), 128.0)
    export_dynamic_batch(scorer.eval(), example, path, INPUT, [SCORE, ANOMALY_MAP], OPSET, max_batch)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def check_parity(scorer: PatchCoreScorer, path: Path, grey: np.ndarray, atol: float = 1e-4) -> float:
    """Max |ONNX Runtime - PyTorch| over both outputs, relative to each output's scale (at least 1);
    raises ExportError above `atol`. `grey`: (N, 1, S, S) float32 in 0..255."""
    grey = np.ascontiguousarray(grey, dtype=np.float32)
    with torch.inference_mode():
        reference = [t.numpy() for t in scorer.eval()(torch.from_numpy(grey))]
    return parity_gap(session(path).run([SCORE, ANOMALY_MAP], {INPUT: grey}), reference, path, atol)


def anomaly_card(cfg: PatchCoreConfig, fitted: FittedAnomalyModel, good_class: str, metrics: dict,
                 lineage: dict, channels: int = 1) -> dict:  # fmt: skip
    size = cfg.image_size
    return new_card(
        IMAGE_ANOMALY,
        model={"name": str(cfg.backbone), "algorithm": "PatchCore (memory bank of good-part patch features)",
               "layers": list(cfg.layers), "neighbourhood": cfg.neighbourhood, "memory_bank_patches": fitted.bank_size,
               "good_class": good_class, "good_training_images": fitted.train_good},
        input={"name": INPUT, "dtype": "float32", "shape": ["batch", channels, size, size],
               "preprocessing": {"image_size": size, "resize": RESIZE, "normalisation": "inside the model",
                                 "colour": "RGB" if channels == 3 else "grey", "values": VALUES[channels]}},
        outputs=[{"name": SCORE, "shape": ["batch"], "meaning": "anomaly score: the worst patch's distance to the nearest good patch"},
                 {"name": ANOMALY_MAP, "shape": ["batch", 1, size, size],
                  "meaning": "per-pixel anomaly score (patch distances upsampled and smoothed): where the defect is"}],
        decision={"threshold": fitted.threshold, "good_class": good_class,
                  "target_false_reject_rate": cfg.target_false_reject_rate,
                  "chosen_on": "good images of the validation parts",
                  "rule": "reject the part when score > threshold"},
        metrics=metrics, lineage=lineage,
    )  # fmt: skip


@dataclass(frozen=True)
class ImageAnomalyExport:
    path: Path
    card_path: Path
    parity_max_abs: float
    card: dict

    def flat(self) -> dict[str, float]:
        keep = ("onnx_test_false_reject_rate", "onnx_test_defect_recall", "onnx_test_auroc",
                "onnx_latency_ms_p95", "onnx_size_bytes")  # fmt: skip
        return {k: float(v) for k, v in self.card["metrics"].items() if k in keep} | {
            "export_parity_max_abs": self.parity_max_abs
        }


def file_figures(sess, data: AnomalyImages, threshold: float) -> dict[str, float]:
    """The test part as the exported file (its open session) scores it: what the gate and `registry
    approve` judge."""
    rows = data.part("test")
    scores = run_batched(sess, channels_first(data.images[rows]), batch=16)
    figures = part_figures(scores, data.good[rows], threshold)
    return figures.flat("onnx_test_")


def export_image_anomaly(cfg: PatchCoreConfig, fitted: FittedAnomalyModel, data: AnomalyImages, good_class: str,
                         metrics: dict, lineage: dict, out_dir: Path, parity_images: int = 8) -> ImageAnomalyExport:  # fmt: skip
    """Export, check parity on validation images, measure the file (test figures, size, batch-1 latency),
    write the card into it and beside it."""
    channels = 3 if data.images.ndim == 4 else 1
    path = export_onnx(fitted.scorer, out_dir / "image_anomaly.onnx", cfg.image_size, channels=channels)
    rows = data.part("val")[:parity_images]
    grey = channels_first(data.images[rows])
    gap = check_parity(fitted.scorer, path, grey)
    sess = session(path)
    _, p95 = batch1_latency_ms(lambda x: sess.run([SCORE], {INPUT: x}), grey, runs=20)
    measured = file_figures(sess, data, fitted.threshold) | {
        "onnx_latency_ms_p95": p95, "onnx_size_bytes": float(path.stat().st_size),
    }  # fmt: skip
    card = anomaly_card(cfg, fitted, good_class, metrics | measured, lineage, channels)
    card["export"] = {"opset": OPSET, "precision": "fp32", "parity_max_abs": gap, "parity_images": len(rows)}
    write_card(path, card)
    return ImageAnomalyExport(path, save_card(card, out_dir / "model_card.json"), gap, card)
