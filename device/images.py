"""`shopfloor edge predict`: run an image model's ONNX file on image files, as the line would (an
image classifier here; an image anomaly model through device.image_anomaly).

Preprocessing (image size, resize rule) and the reject rule come from the file's own card
(core.card); decoding and resizing are inputs.images, the code training used. Needs numpy,
OpenCV and ONNX Runtime only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.card import IMAGE_ANOMALY, IMAGE_CLASSIFIER, classes, read_card
from core.errors import ConfigError, DataError
from core.onnx_runtime import run_batched, session
from device.image_anomaly import AnomalyImageModel, AnomalyVerdict, heat_overlay
from inputs.images import card_colour, load_batch, read_image, resize_square


@dataclass(frozen=True)
class Verdict:
    path: str
    label: str
    probability: float
    reject: bool | None  # None when the model has no ok-class threshold
    defect_probability: float | None = None  # 1 - P(ok class): what the reject rule compares
    threshold: float | None = None

    def explain(self) -> str:
        """The decision in an operator's words: what was compared with what, then the top class."""
        top = f"top class {self.label} {self.probability:.2f}"
        if self.reject is None:
            return f"{self.label} ({self.probability:.2f})"
        if self.reject:
            return f"REJECT: defect probability {self.defect_probability:.2f} >= {self.threshold:.2f}; {top}"
        return f"accept: defect probability {self.defect_probability:.2f} < {self.threshold:.2f}; {top}"


def image_card(model_file: Path) -> dict:
    card = read_card(model_file)
    if card["kind"] != IMAGE_CLASSIFIER:
        raise ConfigError(f"{model_file} is a {card['kind']} model; images need an {IMAGE_CLASSIFIER} model")
    return card


class ImageModel:
    """An installed image classifier, loaded once: preprocessing and the reject rule from its card."""

    def __init__(self, model_path: Path) -> None:
        self.card = image_card(model_path)
        self.classes, self.decision = classes(self.card), self.card["decision"]
        self.size = self.card["input"]["preprocessing"]["image_size"]
        self.colour = card_colour(self.card)
        self.session = session(model_path)
        self.outputs = [o.name for o in self.session.get_outputs()]

    def pixels(self, path: str | Path) -> np.ndarray:
        """One file decoded and resized as this model was trained: (S, S) grey or (S, S, 3) RGB uint8."""
        return resize_square(read_image(path, self.colour), self.size)

    def verdict(self, path: str, proba: np.ndarray) -> Verdict:
        ok, threshold = self.decision.get("ok_class"), self.decision.get("defect_threshold")
        best = int(np.argmax(proba))
        if ok not in self.classes or threshold is None:
            return Verdict(path, self.classes[best], float(proba[best]), None)
        defect = float(1.0 - proba[self.classes.index(ok)])
        return Verdict(
            path, self.classes[best], float(proba[best]), defect >= threshold, defect, float(threshold)
        )

    def run(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (N, C) and, when the file has one, the embedding (N, E) of input (N, C, S, S)."""
        outputs = self.session.run(None, {self.card["input"]["name"]: grey})
        return outputs[0], outputs[1] if len(outputs) > 1 else None


def _readable(
    images: list[str], size: int, colour: bool
) -> tuple[list[str], list[np.ndarray], list[DataError]]:
    readable, pixels, errors = [], [], []
    for path in images:
        try:
            pixels.append(load_batch([path], size, colour))
            readable.append(path)
        except DataError as err:
            errors.append(err)
    return readable, pixels, errors


def predict_files(model_path: Path, images: list[str], maps_dir: Path | None = None
                  ) -> tuple[list[Verdict | AnomalyVerdict], list[DataError]]:  # fmt: skip
    """Judge files with an exported image model; preprocessing and threshold come from its own card.
    An anomaly model's maps are written to `maps_dir` as PNGs when given.

    A file that cannot be read is returned as its error and the others are judged: one bad
    file in a batch must not cost the verdicts of the good ones."""
    if read_card(model_path)["kind"] == IMAGE_ANOMALY:
        return _predict_anomaly(AnomalyImageModel(model_path), images, maps_dir)
    model = ImageModel(model_path)
    readable, pixels, errors = _readable(images, model.size, model.colour)
    if not readable:
        return [], errors
    proba = run_batched(model.session, np.concatenate(pixels))
    return [model.verdict(path, p) for path, p in zip(readable, proba, strict=True)], errors


def _predict_anomaly(model: AnomalyImageModel, images: list[str], maps_dir: Path | None):
    import cv2

    readable, pixels, errors = _readable(images, model.size, model.colour)
    verdicts = []
    for path, grey in zip(readable, pixels, strict=True):
        scores, maps = model.run(grey)
        verdicts.append(model.verdict(path, float(scores[0]), maps[0]))
        if maps_dir is not None:
            maps_dir.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(
                str(maps_dir / f"{Path(path).stem}_map.png"),
                heat_overlay(grey[0, 0], maps[0], model.threshold),
            )
    return verdicts, errors


def verdicts_json(verdicts: list[Verdict]) -> str:
    return json.dumps([v.__dict__ for v in verdicts], indent=2)
