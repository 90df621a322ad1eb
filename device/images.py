"""`shopfloor edge predict`: run an image classifier's ONNX file on image files, as the line would.

Preprocessing (image size, resize rule) and the reject rule come from the file's own card
(core.card); decoding and resizing are inputs.images, the code training used. Needs numpy,
OpenCV and ONNX Runtime only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.card import IMAGE_CLASSIFIER, classes, read_card
from core.errors import ConfigError
from core.onnx_runtime import run_batched, session
from inputs.images import load_batch


@dataclass(frozen=True)
class Verdict:
    path: str
    label: str
    probability: float
    reject: bool | None  # None when the model has no ok-class threshold


def image_card(model_file: Path) -> dict:
    card = read_card(model_file)
    if card["kind"] != IMAGE_CLASSIFIER:
        raise ConfigError(f"{model_file} is a {card['kind']} model; images need an {IMAGE_CLASSIFIER} model")
    return card


def predict_files(model_path: Path, images: list[str]) -> list[Verdict]:
    """Classify files with an exported model; preprocessing and threshold come from its own card."""
    card = image_card(model_path)
    names, decision = classes(card), card["decision"]
    size = card["input"]["preprocessing"]["image_size"]
    proba = run_batched(session(model_path), load_batch(images, size))
    ok, threshold = decision.get("ok_class"), decision.get("defect_threshold")
    verdicts = []
    for path, p in zip(images, proba, strict=True):
        reject = None
        if ok in names and threshold is not None:
            reject = bool(1.0 - p[names.index(ok)] >= threshold)
        best = int(np.argmax(p))
        verdicts.append(Verdict(path, names[best], float(p[best]), reject))
    return verdicts


def verdicts_json(verdicts: list[Verdict]) -> str:
    return json.dumps([v.__dict__ for v in verdicts], indent=2)
