"""`shopfloor edge predict`: run the installed model on image files, as the line would."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from registry.onnx_export import read_card, run_onnx, session
from training.preprocess import load_batch


@dataclass(frozen=True)
class Verdict:
    path: str
    label: str
    probability: float
    reject: bool | None  # None when the model has no ok-class threshold


def predict_files(model_path: Path, images: list[str]) -> list[Verdict]:
    """Classify files with an exported model; preprocessing and threshold come from its own card."""
    card = read_card(model_path)
    proba = run_onnx(session(model_path), load_batch(images, card["input"]["image_size"]))
    classes, decision = card["classes"], card.get("decision") or {}
    ok, threshold = decision.get("ok_class"), decision.get("defect_threshold")
    verdicts = []
    for path, p in zip(images, proba, strict=True):
        reject = None
        if ok in classes and threshold is not None:
            reject = bool(1.0 - p[classes.index(ok)] >= threshold)
        best = int(np.argmax(p))
        verdicts.append(Verdict(path, classes[best], float(p[best]), reject))
    return verdicts


def verdicts_json(verdicts: list[Verdict]) -> str:
    return json.dumps([v.__dict__ for v in verdicts], indent=2)
