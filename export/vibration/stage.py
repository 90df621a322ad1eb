"""Stage function `export_anomaly_model`: ONNX file, verified, with its card and its normal reference.

The parity check runs on real windows (normal and fault); the reference (score quantiles and a
histogram of held-out normal windows) is computed by running the exported file itself, since that
file is what devices score with and what a drift monitor compares them against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.metadata import save_card, write_card
from export.vibration.card import model_card, normal_reference
from export.vibration.config import AnomalyExportConfig
from export.vibration.onnx import EXPORTERS, check_parity, onnx_scores
from training.vibration.config import AnomalyTrainConfig
from training.vibration.dataset import AnomalyDataset
from training.vibration.train import AnomalyTrainResult


@dataclass(frozen=True)
class AnomalyExport:
    path: Path
    card_path: Path
    parity_max_abs: float
    card: dict


def file_metrics(normal: np.ndarray, faults: np.ndarray, threshold: float) -> dict[str, float]:
    """The gate's two numbers as the exported file scores the held-out windows: what `registry approve`
    judges (registry.vibration), the file's own measurement rather than the Python model's."""
    auroc = float("nan")
    if len(faults) and len(normal):
        from sklearn.metrics import roc_auc_score

        auroc = float(
            roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(faults))], np.r_[normal, faults])
        )
    return {"onnx_false_alarm_rate": float(np.mean(normal > threshold)), "onnx_auroc_all_faults": auroc}


def export_anomaly_model(train_cfg: AnomalyTrainConfig, trained: AnomalyTrainResult, dataset: AnomalyDataset,
                         metrics: dict, lineage: dict, cfg: AnomalyExportConfig, out_dir: Path) -> AnomalyExport:  # fmt: skip
    """Export `trained.model`, verify it (checker + parity), write the card into it and beside it."""
    n_features = len(trained.feature_names)
    path = EXPORTERS[str(train_cfg.model.name)](
        trained.model, n_features, out_dir / "anomaly.onnx", cfg.opset
    )
    windows = dataset.features("test", None)  # held-out normal and every fault window
    rows = windows[np.random.default_rng(0).permutation(len(windows))[: cfg.parity_windows]]
    gap = check_parity(trained.model, path, rows, cfg.parity_atol, cfg.parity_rtol)
    normal, faults = (
        onnx_scores(path, dataset.features("test", True)),
        onnx_scores(path, dataset.features("test", False)),
    )
    card = model_card(train_cfg, trained, dataset, metrics | file_metrics(normal, faults, trained.threshold.value),
                      lineage, normal_reference(normal))  # fmt: skip
    card["export"] = {"opset": cfg.opset, "precision": "fp32", "parity_max_abs": gap, "parity_windows": len(rows),
                      "parity_tolerance": {"atol": cfg.parity_atol, "rtol": cfg.parity_rtol}}  # fmt: skip
    write_card(path, card)
    return AnomalyExport(path, save_card(card, out_dir / "model_card.json"), gap, card)
