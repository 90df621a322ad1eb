"""The one place that turns an image file into model input pixels.

Training, evaluation, ONNX calibration, the promotion gate and devices all call `read_grey` +
`resize_square`, so a model never sees pixels prepared differently at the line than in training.
Pillow and numpy only: a camera box installs no OpenCV or torch for it. Normalisation is not
here: it lives inside the model (training.images.model), so the exported ONNX file carries it too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import DataError

RESIZE = "area (box filter), stretched to a square"  # recorded in model cards
# What counts as an image file, everywhere (data checks, the device agent, sample uploads).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
# Part of every pixel-cache key: a change to decoding or resizing must not reuse old pixels.
PREPROCESSING_VERSION = "pillow-box-1"


def read_grey(path: str | Path) -> np.ndarray:
    """Decode an image file to 8-bit grey, (H, W); colour images are converted to luminance.

    A JPEG is decoded straight to its luma channel (as the camera encoded it), the EXIF orientation
    is applied, and 16-bit images keep their top 8 bits.
    """
    try:
        with Image.open(path) as image:
            image.draft("L", image.size)  # JPEG: libjpeg's own grey output; other formats ignore it
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                return (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise DataError(
            f"{path}: cannot decode as an image (corrupt, truncated or not an image file): {err}"
        ) from None


def resize_square(grey: np.ndarray, size: int) -> np.ndarray:
    """Resize (H, W) to (size, size) by area averaging (a box filter): thin cracks do not alias away."""
    return np.asarray(Image.fromarray(grey).resize((size, size), Image.Resampling.BOX))


def load_batch(paths: list[str], size: int) -> np.ndarray:
    """Files -> float32 (N, 1, size, size) grey values in 0..255: the exported model's input."""
    return np.stack([resize_square(read_grey(p), size) for p in paths])[:, None].astype(np.float32)
