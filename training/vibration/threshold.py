"""Alarm threshold for a target false-alarm rate, set on normal windows the model never trained on.

The (1 - target) quantile of the calibration scores is the textbook threshold. Normal data also
drifts (temperature, mounting, load), so scores of later normal windows run a little higher
than those of the calibration slice. `drift_margin` measures how much on normal data alone: a
back-test model trained on the earlier part of the training slice is calibrated on its later
part and checked on the calibration slice; the margin, in units of the calibration scores'
median absolute deviation (MAD), is what that later slice needed to stay at the target rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from core.errors import DataError


@dataclass(frozen=True)
class Threshold:
    value: float
    target_false_alarm_rate: float
    quantile_score: float  # the (1 - target) quantile of the calibration scores
    margin_mads: float
    mad: float
    calibration_windows: int
    calibration_false_alarm_rate: float  # share of calibration windows above `value`

    def to_dict(self) -> dict:
        return asdict(self)


def mad(scores: np.ndarray) -> float:
    """Median absolute deviation, floored so a margin never vanishes on identical scores."""
    spread = float(np.median(np.abs(scores - np.median(scores))))
    return max(spread, 1e-9 * max(1.0, float(np.abs(scores).max())))


def calibrate(scores: np.ndarray, target: float, margin_mads: float = 0.0) -> Threshold:
    """Threshold = (1 - target) quantile of normal calibration scores + margin_mads x their MAD."""
    if len(scores) < int(np.ceil(1 / target)):
        raise DataError(
            f"{len(scores)} calibration windows cannot measure a {target:.1%} false-alarm rate; "
            f"need >= {int(np.ceil(1 / target))}: use a smaller split.normal_hop or more normal data"
        )
    quantile = float(np.quantile(scores, 1 - target, method="higher"))
    spread = mad(scores)
    value = quantile + margin_mads * spread
    return Threshold(
        value, target, quantile, margin_mads, spread, len(scores), float(np.mean(scores > value))
    )


def drift_margin(earlier: np.ndarray, later: np.ndarray, target: float) -> float:
    """MADs of `earlier` to add to its quantile so that at most `target` of `later` exceeds it."""
    needed = np.quantile(later, 1 - target, method="higher") - np.quantile(
        earlier, 1 - target, method="higher"
    )
    return max(0.0, float(needed) / mad(earlier))
