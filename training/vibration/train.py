"""Stage function `train_anomaly_model`: fit on normal training windows, threshold on calibration windows.

With `threshold.margin_mads` unset, a back-test on the training slice alone measures how much
normal scores drift from one slice to the next (see threshold.py) before the final model is fit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from core.errors import DataError
from inputs.vibration.explain import best_peak_ratios
from inputs.vibration.features import FEATURE_SET, normal_profile
from training.vibration.config import AnomalyTrainConfig
from training.vibration.dataset import AnomalyDataset
from training.vibration.models import AnomalyModel, build_model
from training.vibration.threshold import Threshold, calibrate, drift_margin


@dataclass
class AnomalyTrainResult:
    model: AnomalyModel
    threshold: Threshold
    normal_mean: np.ndarray  # (F,) of the training windows
    normal_spread: np.ndarray  # (F,) floored standard deviation
    feature_names: list[str]
    feature_set: str
    train_windows: int
    backtest: dict
    fit_seconds: float
    min_peak_ratio: float  # envelope peak that counts as a defect signature (see explain.py)


def _backtest_margin(cfg: AnomalyTrainConfig, data: AnomalyDataset) -> tuple[float, dict]:
    """Fit on the first two thirds of each training slice, calibrate on the last third (no shared
    samples), and measure the margin the calibration slice needs on top."""
    if cfg.threshold.margin_mads is not None:
        return cfg.threshold.margin_mads, {"margin_mads": cfg.threshold.margin_mads, "source": "configured"}
    early, late = [], []
    for part in data.select("train", normal=True):
        clean_starts = part.starts[part.clean]
        cut = clean_starts.min() + 2 * (clean_starts.max() + cfg.window.length - clean_starts.min()) // 3
        early.append(part.features[clean_starts + cfg.window.length <= cut])
        late.append(part.features[clean_starts >= cut])
    early_x, late_x = np.concatenate(early), np.concatenate(late)
    mean, spread = normal_profile(early_x, data.feature_names, data.fs, cfg.window.length)
    model = build_model(cfg.model).fit(early_x, mean, spread)
    target = cfg.threshold.target_false_alarm_rate
    later_scores = model.score(data.features("calibration"))
    margin = drift_margin(model.score(late_x), later_scores, target)
    return margin, {"margin_mads": margin, "source": "back-test", "fit_windows": len(early_x), "calibration_windows": len(late_x)}  # fmt: skip


def _peak_ratio(cfg: AnomalyTrainConfig, data: AnomalyDataset) -> float:
    """The configured signature ratio, or the highest envelope peak ratio any normal training or
    calibration window shows at any defect order (never below 2): a signature must stand out more than
    normal ever did. It is a property of the signal, not of the model, so training windows may set it.
    (The 99th percentile of the calibration slice alone let 6 % of held-out normal windows match.)"""
    if cfg.explain.min_peak_ratio is not None:
        return cfg.explain.min_peak_ratio
    ratios = [
        best_peak_ratios(p.windows(np.flatnonzero(p.clean)), data.fs, p.rpm, data.channels, cfg.features)
        for part in ("train", "calibration")
        for p in data.select(part, normal=True)
        if p.samples is not None
    ]
    return max(2.0, float(np.concatenate(ratios).max()))


def train_anomaly_model(cfg: AnomalyTrainConfig, data: AnomalyDataset) -> AnomalyTrainResult:
    """Train `cfg.model.name` on normal training windows; threshold for the target false-alarm rate."""
    train_x, calib_x = data.features("train"), data.features("calibration")
    for part, x in (("training", train_x), ("calibration", calib_x)):
        if len(x) < 10:
            raise DataError(
                f"only {len(x)} clean normal {part} windows; need more normal data, a shorter window.length "
                "or a smaller split.normal_hop"
            )
    started = time.perf_counter()
    margin, backtest = _backtest_margin(cfg, data)
    mean, spread = normal_profile(train_x, data.feature_names, data.fs, cfg.window.length)
    model = build_model(cfg.model).fit(train_x, mean, spread)
    threshold = calibrate(model.score(calib_x), cfg.threshold.target_false_alarm_rate, margin)
    return AnomalyTrainResult(
        model, threshold, mean, spread, list(data.feature_names), FEATURE_SET, len(train_x), backtest,
        time.perf_counter() - started, _peak_ratio(cfg, data),
    )  # fmt: skip
