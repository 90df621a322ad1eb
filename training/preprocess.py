"""The one place that turns an image file into model input pixels.

Training, evaluation, ONNX calibration and the edge client all call `read_grey` + `resize_square`,
so a model never sees pixels prepared differently at the line than in training. Normalisation is
not here: it lives inside the model (training.model), so the exported ONNX file carries it too.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from data_checks.errors import DataError

RESIZE = "area, stretched to a square"  # recorded in model cards


def read_grey(path: str | Path) -> np.ndarray:
    """Decode an image file to 8-bit grey, (H, W); colour images are converted."""
    raw = np.fromfile(str(path), dtype=np.uint8)
    grey = cv2.imdecode(raw, cv2.IMREAD_GRAYSCALE) if raw.size else None
    if grey is None:
        raise DataError(f"{path}: cannot decode as an image (corrupt, truncated or not an image file)")
    return grey


def resize_square(grey: np.ndarray, size: int) -> np.ndarray:
    """Resize (H, W) to (size, size). Area interpolation keeps thin cracks from aliasing away."""
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)


def load_batch(paths: list[str], size: int) -> np.ndarray:
    """Files -> float32 (N, 1, size, size) grey values in 0..255: the exported model's input."""
    return np.stack([resize_square(read_grey(p), size) for p in paths])[:, None].astype(np.float32)
