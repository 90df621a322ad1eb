"""Write a model card into an exported ONNX file (the reader, which needs only ONNX Runtime, is core.card).

The card goes in as JSON under core.card.CARD_KEY, beside a few plain keys any ONNX viewer shows.
Every shipped file passes through `write_card`, which also drops what the exporters leave about the
machine that built it: torch's dynamo exporter records a Python stack trace with absolute source
paths on every node (pkg.torch.onnx.*). A file sent to devices names no build-host path.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from core.card import CARD_KEY, check_card, plain_metadata


def strip_build_details(model: onnx.ModelProto) -> None:
    """Remove per-node exporter metadata (stack traces with the build host's paths) and doc strings."""
    graphs = [model.graph] + [f for f in model.functions]
    for graph in graphs:
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
    model.doc_string = model.graph.doc_string = ""


def write_card(path: Path, card: dict) -> None:
    """Replace the file's metadata with `card` (checked first) and its plain keys; strip build details."""
    check_card(card, str(path))
    model = onnx.load(str(path))
    strip_build_details(model)
    del model.metadata_props[:]
    for key, value in ({CARD_KEY: json.dumps(card, default=str)} | plain_metadata(card)).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def save_card(card: dict, path: Path) -> Path:
    """The card beside the file too, as plain JSON for people and the MLflow artifact view."""
    path.write_text(json.dumps(card, indent=2, default=str))
    return path
