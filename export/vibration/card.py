"""The vibration model's card (core.card layout): everything scoring needs to rebuild the exact
features and decision from the file alone, and what normal looked like to the shipped file.

Written into the ONNX file by export.vibration.stage and logged as MLflow model metadata; read back
by `inputs.vibration.features.features_from_card`, which refuses a feature set this code does not
compute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.card import VIBRATION_ANOMALY, new_card
from inputs.vibration.bearing import defect_orders
from inputs.vibration.features import FEATURE_SET, FEATURE_SET_NAME, FEATURE_SET_VERSION
from training.vibration.config import AnomalyTrainConfig

if TYPE_CHECKING:
    from training.vibration.dataset import AnomalyDataset
    from training.vibration.train import AnomalyTrainResult


def normal_reference(scores: np.ndarray, bins: int = 20) -> dict:
    """Scores of held-out normal windows as the shipped file computes them: quantiles and a histogram,
    the baseline a drift monitor compares a device's windows with."""
    quantiles = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    counts, edges = np.histogram(scores, bins=bins)
    return {
        "windows": len(scores),
        "score_quantiles": {str(q): float(np.quantile(scores, q)) for q in quantiles},
        "score_histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def model_card(cfg: AnomalyTrainConfig, trained: AnomalyTrainResult, dataset: AnomalyDataset,
               metrics: dict, lineage: dict, reference: dict) -> dict:  # fmt: skip
    rpms = [p.rpm for p in dataset.select("train", normal=True) if p.rpm]
    names = trained.feature_names
    return new_card(
        VIBRATION_ANOMALY,
        model={"name": str(cfg.model.name),
               "normal_profile": {"mean": trained.normal_mean.tolist(), "spread": trained.normal_spread.tolist()},
               "bearing": cfg.features.bearing.model_dump(mode="json") | {"orders": defect_orders(cfg.features.bearing)}},
        input={"name": "features", "dtype": "float32", "shape": ["batch", len(names)],
               "preprocessing": {
                   "sample_rate": dataset.fs, "channels": list(dataset.channels), "units": dataset.units,
                   "window": cfg.window.length, "hop": cfg.window.hop,
                   "nominal_rpm": float(np.median(rpms)) if rpms else None,
                   "feature_set": {"name": FEATURE_SET_NAME, "version": FEATURE_SET_VERSION, "id": FEATURE_SET,
                                   "config": cfg.features.model_dump(mode="json"), "names": names}}},
        outputs=[{"name": "score", "shape": ["batch"], "meaning": "higher = less like the normal training windows"}],
        decision={"rule": "alarm when score > threshold", "threshold": trained.threshold.value,
                  "calibration": trained.threshold.to_dict(), "backtest": trained.backtest,
                  "explain": {"top_features": cfg.explain.top_features, "min_peak_ratio": trained.min_peak_ratio}},
        metrics=metrics,
        reference=reference,
        lineage=lineage,
    )  # fmt: skip
