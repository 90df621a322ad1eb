"""Decode and resize every image once, keep the pixels in memory and on disk.

Decoding a JPEG costs more than augmenting it, and on a GPU the decoder, not the model, is the
bottleneck; so the resized images (grey, or RGB for a colour line) and their defect masks are cached
as one uint8 array per (file set, size, colour). On the magnetic tiles at 224 px that is 67 MB.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import track

from inputs.images import PREPROCESSING_VERSION, read_grey, read_image, resize_square


@dataclass(frozen=True)
class Pixels:
    images: np.ndarray  # (N, S, S) uint8 grey, or (N, S, S, 3) RGB
    masks: np.ndarray  # (N, S, S) uint8, 255 = defect; all zero where an image has no mask


def _cache_key(paths: list[str], size: int, colour: bool) -> str:
    digest = hashlib.sha256(f"{size}|{PREPROCESSING_VERSION}{'|rgb' if colour else ''}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def load_pixels(paths: list[str], mask_paths: list[str | None], size: int, cache_dir: Path | None,
                colour: bool = False) -> Pixels:  # fmt: skip
    """Resized images and masks for `paths`, from the cache when the files are unchanged."""
    cache_file = cache_dir / f"pixels_{size}_{_cache_key(paths, size, colour)}.npz" if cache_dir else None
    if cache_file and cache_file.exists():
        with np.load(cache_file) as cached:
            return Pixels(cached["images"], cached["masks"])
    images = np.zeros((len(paths), size, size, 3) if colour else (len(paths), size, size), np.uint8)
    masks = np.zeros((len(paths), size, size), np.uint8)
    for i in track(range(len(paths)), description=f"Decoding images at {size} px", transient=True):
        images[i] = resize_square(read_image(paths[i], colour), size)
        if mask_paths[i]:
            masks[i] = resize_square(read_grey(mask_paths[i]), size)
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, images=images, masks=masks)
        tmp.replace(cache_file)  # atomic: a killed run never leaves half a cache behind
    return Pixels(images, masks)
