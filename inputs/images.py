"""The one place that turns an image file into model input pixels.

Training, evaluation, ONNX calibration, the promotion gate and devices all call `read_image` (or
`read_grey`) + `resize_square`, so a model never sees pixels prepared differently at the line than in
training. Grey stays grey, (H, W); a data set whose images have colour (`looks_colour`) keeps three
channels, (H, W, 3) RGB, and its model card says so (`card_colour`), so a device decodes the same way.
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


def read_image(path: str | Path, colour: bool) -> np.ndarray:
    """Decode an image file to 8-bit (H, W) grey, or (H, W, 3) RGB when the model takes colour.

    Grey: colour images are converted to luminance, and a JPEG is decoded straight to its luma channel
    (as the camera encoded it). RGB: a grey file gives three equal channels. Both apply the EXIF
    orientation, and 16-bit images keep their top 8 bits.
    """
    try:
        with Image.open(path) as image:
            if not colour:
                image.draft("L", image.size)  # JPEG: libjpeg's own grey output; other formats ignore it
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                grey = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2) if colour else grey
            return np.asarray(image.convert("RGB" if colour else "L"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise DataError(
            f"{path}: cannot decode as an image (corrupt, truncated or not an image file): {err}"
        ) from None


def read_grey(path: str | Path) -> np.ndarray:
    """8-bit grey (H, W): read_image without colour."""
    return read_image(path, colour=False)


def read_rgb(path: str | Path) -> np.ndarray:
    """8-bit RGB (H, W, 3): read_image with colour."""
    return read_image(path, colour=True)


COLOUR_SPREAD = 3.0  # mean |R - G| and |G - B| in grey levels above which an image has colour


def looks_colour(paths: list[str], sample: int = 32) -> bool:
    """True when most of up to `sample` evenly spaced images have colour (channels that differ by more
    than JPEG's chroma noise): a grey camera saved as RGB JPEG stays grey."""
    chosen = (
        [paths[i] for i in np.linspace(0, len(paths) - 1, min(sample, len(paths))).astype(int)]
        if paths
        else []
    )
    coloured = 0
    for path in chosen:
        try:
            with Image.open(path) as image:
                image.draft("RGB", (128, 128))  # JPEG: decode at 1/2..1/8 scale, enough to see colour
                rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            continue  # the data checks report unreadable files
        spread = (np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean()) / 2
        coloured += bool(spread > COLOUR_SPREAD)
    return coloured * 2 > len(chosen)


def card_colour(card: dict) -> bool:
    """Whether a model card's input takes three channels (cards before colour: grey)."""
    return card["input"].get("shape", [None, 1])[1] == 3


def luminance(pixels: np.ndarray) -> np.ndarray:
    """8-bit grey of (H, W) grey or (H, W, 3) RGB pixels (ITU-R 601 weights, as Pillow's "L")."""
    if pixels.ndim == 2:
        return pixels
    return np.asarray(Image.fromarray(pixels).convert("L"), dtype=np.uint8)


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize (H, W) or (H, W, 3) to (size, size[, 3]) by area averaging (a box filter): thin cracks do
    not alias away."""
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BOX))


def channels_first(pixels: np.ndarray) -> np.ndarray:
    """uint8 images (N, S, S) grey or (N, S, S, 3) RGB -> float32 (N, C, S, S): the models' input."""
    pixels = pixels[:, None] if pixels.ndim == 3 else pixels.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(pixels, dtype=np.float32)


def load_batch(paths: list[str], size: int, colour: bool = False) -> np.ndarray:
    """Files -> float32 (N, C, size, size) values in 0..255 (C = 1 grey, 3 RGB): the exported model's input."""
    return channels_first(np.stack([resize_square(read_image(p, colour), size) for p in paths]))
