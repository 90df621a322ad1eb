"""The image classifier's card (core.card layout): classes, how to feed the file, the reject rule, and
what held-out parts look like to the shipped file (the reference a drift monitor compares against)."""

from __future__ import annotations

import numpy as np

from core.card import IMAGE_CLASSIFIER, new_card
from export.images.onnx import EMBEDDING, EMBEDDING_DIMS, INPUT, OPSET, OUTPUT
from inputs.images import RESIZE
from training.images.model import ModelSpec

VALUES = {
    1: "8-bit grey levels 0..255 (colour images: convert to luminance)",
    3: "8-bit RGB 0..255, channels first (grey images: repeat the grey level)",
}
HISTOGRAM_EDGES = np.linspace(0.0, 1.0, 21)  # top-class probability and normalised entropy, 20 bins each


def output_reference(proba: np.ndarray, embedding: np.ndarray | None = None, sample: int = 128) -> dict:
    """Class mix, top-class probability and entropy histograms of probabilities (N, C) on held-out
    images, and a sample of their embeddings (N, E): what the shipped file showed before any device."""
    top = proba.max(1)
    entropy = -(proba * np.log(np.clip(proba, 1e-12, 1.0))).sum(1) / np.log(proba.shape[1])
    counts = np.bincount(proba.argmax(1), minlength=proba.shape[1])
    return {
        "images": len(proba),
        "predicted_class_share": (counts / max(len(proba), 1)).tolist(),
        "top_probability_histogram": np.histogram(top, HISTOGRAM_EDGES)[0].tolist(),
        "entropy_histogram": np.histogram(entropy, HISTOGRAM_EDGES)[0].tolist(),
        "histogram_edges": HISTOGRAM_EDGES.tolist(),
        "embedding_sample": [] if embedding is None else np.round(embedding[:sample], 5).tolist(),
    }


def model_card(spec: ModelSpec, decision: dict, metrics: dict, lineage: dict, reference: dict) -> dict:
    size, classes, channels = spec.image_size, list(spec.classes), spec.channels
    return new_card(
        IMAGE_CLASSIFIER,
        model={"name": spec.backbone, "classes": classes, "mask_pooling": spec.mask_pooling},
        input={"name": INPUT, "dtype": "float32", "shape": ["batch", channels, size, size],
               "preprocessing": {"image_size": size, "resize": RESIZE, "normalisation": "inside the model",
                                 "colour": "RGB" if channels == 3 else "grey", "values": VALUES[channels]}},
        outputs=[{"name": OUTPUT, "shape": ["batch", len(classes)], "meaning": "class probabilities, in the order of model.classes"},
                 {"name": EMBEDDING, "shape": ["batch", EMBEDDING_DIMS],
                  "meaning": "the pooled features projected on their first principal components (fitted on training images at export): for drift monitoring"}],
        decision=decision | {"rule": "reject the part when 1 - p(ok_class) >= defect_threshold; its defect class is the argmax"},
        metrics=metrics,
        reference=reference,
        lineage=lineage,
        export={"opset": OPSET,
                "int8": "static QDQ, per-channel int8 weights on the pair-safe grid rounded by GPTQ (each layer's "
                        "output on the calibration images moves least), uint8 activations calibrated by min/max on "
                        "training images; preprocessing, the first convolutions and the head in float"},
    )  # fmt: skip
