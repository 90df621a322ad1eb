"""An image anomaly model on a device: the score, the reject decision and *where* the part looks wrong.

Preprocessing and the threshold come from the file's own card (core.card, kind `image-anomaly`);
decoding and resizing are inputs.images, the code training used. The file returns an image score and an
anomaly map; the device rejects a part whose score is above the card's threshold and reports the map's
hottest point, so an operator knows where to look. Needs numpy, OpenCV and ONNX Runtime only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.card import IMAGE_ANOMALY, read_card
from core.errors import ConfigError
from core.onnx_runtime import session
from inputs.images import card_colour, read_image, resize_square


@dataclass(frozen=True)
class AnomalyVerdict:
    path: str
    score: float
    threshold: float
    reject: bool
    hotspot: tuple[float, float]  # (x, y) of the map's maximum, as shares of the image's width and height

    def explain(self) -> str:
        where = f"worst at x {self.hotspot[0]:.0%}, y {self.hotspot[1]:.0%} of the image"
        if self.reject:
            return f"REJECT: anomaly score {self.score:.4g} > {self.threshold:.4g}; {where}"
        return f"accept: anomaly score {self.score:.4g} <= {self.threshold:.4g}; {where}"


class AnomalyImageModel:
    """An installed image anomaly model, loaded once."""

    def __init__(self, model_path: Path) -> None:
        self.card = read_card(model_path)
        if self.card["kind"] != IMAGE_ANOMALY:
            raise ConfigError(f"{model_path} is a {self.card['kind']} model, not an {IMAGE_ANOMALY} model")
        self.size = self.card["input"]["preprocessing"]["image_size"]
        self.colour = card_colour(self.card)
        self.threshold = float(self.card["decision"]["threshold"])
        self.session = session(model_path)
        self.input = self.card["input"]["name"]

    def pixels(self, path: str | Path) -> np.ndarray:
        """One file decoded and resized as this model was fitted: (S, S) grey or (S, S, 3) RGB uint8."""
        return resize_square(read_image(path, self.colour), self.size)

    def run(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores (N,) and anomaly maps (N, S, S) of grey input (N, 1, S, S) in 0..255."""
        scores, maps = self.session.run(None, {self.input: np.ascontiguousarray(grey, dtype=np.float32)})
        return scores, maps[:, 0]

    def verdict(self, path: str, score: float, heat: np.ndarray) -> AnomalyVerdict:
        y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
        spot = (float((x + 0.5) / heat.shape[1]), float((y + 0.5) / heat.shape[0]))
        return AnomalyVerdict(path, float(score), self.threshold, bool(score > self.threshold), spot)


def heat_overlay(grey: np.ndarray, heat: np.ndarray, threshold: float) -> np.ndarray:
    """A BGR picture for people: the image with the map over it (OpenCV's JET colours, scaled so the
    threshold sits at the middle), for `shopfloor edge predict --maps`."""
    import cv2

    scaled = np.clip(heat / (2 * max(threshold, 1e-9)), 0, 1)
    colours = cv2.applyColorMap((255 * scaled).astype(np.uint8), cv2.COLORMAP_JET)
    image = cv2.cvtColor(grey.astype(np.uint8), cv2.COLOR_GRAY2BGR)
    return cv2.addWeighted(image, 0.55, colours, 0.45, 0)
