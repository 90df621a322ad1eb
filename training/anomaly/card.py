"""The model card: everything scoring needs to rebuild the exact features and decision from the file alone.

Written into the ONNX file by registry.anomaly_export and logged as MLflow model metadata.
`features_from_card` refuses a card whose feature set this code does not compute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from data_checks.errors import ConfigError
from training.anomaly.bearing import defect_orders
from training.anomaly.config import AnomalyTrainConfig, FeatureConfig
from training.anomaly.features import FEATURE_SET, FEATURE_SET_NAME, FEATURE_SET_VERSION

if TYPE_CHECKING:  # scoring imports this module; it must not pull in torch and scikit-learn
    from training.anomaly.dataset import AnomalyDataset
    from training.anomaly.train import AnomalyTrainResult

CARD_KIND = "shopfloor.vibration-anomaly"


def model_card(cfg: AnomalyTrainConfig, trained: AnomalyTrainResult, dataset: AnomalyDataset,
               metrics: dict, lineage: dict) -> dict:  # fmt: skip
    rpms = [p.rpm for p in dataset.select("train", normal=True) if p.rpm]
    return {
        "kind": CARD_KIND,
        "model": str(cfg.model.name),
        "feature_set": {"name": FEATURE_SET_NAME, "version": FEATURE_SET_VERSION, "id": FEATURE_SET,
                        "config": cfg.features.model_dump(mode="json"), "names": trained.feature_names},
        "input": {"name": "features", "dtype": "float32", "shape": ["batch", len(trained.feature_names)],
                  "sample_rate": dataset.fs, "channels": list(dataset.channels), "units": dataset.units,
                  "window": cfg.window.length, "hop": cfg.window.hop,
                  "nominal_rpm": float(np.median(rpms)) if rpms else None},
        "output": {"name": "score", "shape": ["batch"], "meaning": "higher = less like the normal training windows"},
        "decision": {"threshold": trained.threshold.value, "rule": "alarm when score > threshold",
                     "calibration": trained.threshold.to_dict(), "backtest": trained.backtest},
        "normal_profile": {"mean": trained.normal_mean.tolist(), "spread": trained.normal_spread.tolist()},
        "explain": {"top_features": cfg.explain.top_features, "min_peak_ratio": trained.min_peak_ratio},
        "bearing": cfg.features.bearing.model_dump(mode="json") | {"orders": defect_orders(cfg.features.bearing)},
        "metrics": metrics,
        "lineage": lineage,
    }  # fmt: skip


def features_from_card(card: dict) -> FeatureConfig:
    """The FeatureConfig a model was trained with; refuses feature sets this code does not compute."""
    if card.get("kind") != CARD_KIND:
        raise ConfigError(
            f"not a vibration anomaly model (card kind {card.get('kind')!r}, expected {CARD_KIND!r})"
        )
    recorded = card["feature_set"]["id"]
    if recorded != FEATURE_SET:
        raise ConfigError(
            f"the model was trained on features {recorded}; this code computes {FEATURE_SET}. "
            "Retrain it (shopfloor train anomaly) or score with the shopfloor version that trained it"
        )
    return FeatureConfig.model_validate(card["feature_set"]["config"])
