"""Brightness, contrast and sharpness bounds from the data set itself, unless set in config.

Fixed bounds tuned on tile photos quarantined valid, bright steel images (mean grey 246) and warned on
one in five images of another line for blur. An unset bound is placed `outlier_spread` robust standard
deviations (1.4826 x the median absolute deviation) from the data set's median, in log scale (these
properties multiply with lamp power, exposure and focus), and never beyond the physical limits below,
so a data set full of black or saturated frames cannot set its own bar. On the magnetic tiles (six lamp
settings) this gives brightness >= 13.3, contrast >= 3.1 and sharpness >= 5.1 and flags no tile, as the
fixed bounds (10, 2, 10) did.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_checks.images.config import ImageRules

# (column, bound, physical limit): a black frame, a saturated frame, a flat frame, a featureless blur
BOUNDS = (("brightness", "min_brightness", 3.0), ("brightness", "max_brightness", 252.0),
          ("contrast", "min_contrast", 1.0), ("blur", "min_blur", 1.0))  # fmt: skip
MIN_IMAGES = 20  # fewer decodable images: the physical limits alone
MIN_LOG_SPREAD = 0.05  # identical images would otherwise allow no variation at all


def _bound(values: np.ndarray, spread: float, upper: bool) -> float:
    logs = np.log(np.clip(values, 1e-6, None))
    median = float(np.median(logs))
    sigma = max(1.4826 * float(np.median(np.abs(logs - median))), MIN_LOG_SPREAD)
    return float(np.exp(median + spread * sigma if upper else median - spread * sigma))


def fit_rules(rules: ImageRules, properties: pd.DataFrame) -> tuple[ImageRules, frozenset[str]]:
    """`rules` with every unset bound set from the decodable images in `properties`; and which were set here."""
    measured = properties[properties["decodable"].astype(bool)]
    filled, derived = {}, set()
    for column, bound, physical in BOUNDS:
        if getattr(rules, bound) is not None:
            continue
        upper = bound.startswith("max")
        value = physical
        if len(measured) >= MIN_IMAGES:
            relative = _bound(measured[column].to_numpy(dtype=float), rules.outlier_spread, upper)
            value = min(relative, physical) if upper else max(relative, physical)
        filled[bound], derived = round(value, 2), derived | {bound}
    return rules.model_copy(update=filled), frozenset(derived)
