"""The one model card: what an exported model is, how to feed it, what its outputs mean, how to decide.

Every exported ONNX file carries its card as JSON in the file's metadata (`shopfloor.card`), so the
file alone says how to use it; the registry logs it beside the model, the edge server puts its
summary in the signed manifest, and devices rebuild their preprocessing from it. One layout for
every kind of model, read here by everyone (server, devices, gates):

    format       "shopfloor.model-card/2"
    kind         "image-classifier" | "image-anomaly" | "vibration-anomaly"
    model        what was trained (backbone and classes; backbone and memory bank; algorithm, normal
                 profile and bearing)
    input        tensor name, dtype, shape, and `preprocessing`: how raw data becomes that tensor
    outputs      [{name, shape, meaning}]
    decision     the rule a device applies to the outputs, with its threshold
    metrics      what was measured before registration (and on which CPU)
    reference    statistics of held-out data as the shipped file sees it, for drift monitoring
    lineage      run, data fingerprint and DVC version, git commit
    export       how the file was made (opset, precision, quantization)

Reading needs ONNX Runtime only (no `onnx`, no torch), so a device can read the card of the
model it pulled. Cards written before this format (image cards with top-level `classes`, and
vibration cards under `shopfloor.anomaly_card`) are read and converted, so models already in a
registry keep working.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import ExportError

CARD_KEY = "shopfloor.card"
LEGACY_VIBRATION_KEY = "shopfloor.anomaly_card"
FORMAT = "shopfloor.model-card/2"
IMAGE_CLASSIFIER, IMAGE_ANOMALY, VIBRATION_ANOMALY = "image-classifier", "image-anomaly", "vibration-anomaly"
KINDS = (IMAGE_CLASSIFIER, IMAGE_ANOMALY, VIBRATION_ANOMALY)
IMAGE_KINDS = (IMAGE_CLASSIFIER, IMAGE_ANOMALY)  # fed with images (inputs.images), scored per image
SECTIONS = ("model", "input", "outputs", "decision", "metrics", "reference", "lineage", "export")


def new_card(kind: str, **sections: object) -> dict:
    """A card of `kind` with every section present (empty where not given); refuses unknown sections."""
    if kind not in KINDS:
        raise ExportError(f"unknown model kind {kind!r}; known kinds: {', '.join(KINDS)}")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ExportError(f"unknown model-card sections {sorted(unknown)}; a card has {', '.join(SECTIONS)}")
    card = {"format": FORMAT, "kind": kind}
    for name in SECTIONS:
        card[name] = sections.get(name, [] if name == "outputs" else {})
    return card


def check_card(card: dict, where: str = "model card") -> dict:
    """The card itself when it has the format, a known kind and every section; ExportError otherwise."""
    if card.get("format") != FORMAT:
        raise ExportError(f"{where}: format {card.get('format')!r}, expected {FORMAT!r}")
    if card.get("kind") not in KINDS:
        raise ExportError(
            f"{where}: unknown model kind {card.get('kind')!r}; known kinds: {', '.join(KINDS)}"
        )
    missing = [name for name in SECTIONS if name not in card]
    if missing:
        raise ExportError(f"{where}: missing sections {missing}")
    return card


def metadata(path: Path) -> dict[str, str]:
    """The metadata_props of an ONNX file, read with ONNX Runtime (what a device has)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ExportError(f"{path}: not a readable ONNX model ({str(err).splitlines()[0]})") from err
    return dict(session.get_modelmeta().custom_metadata_map)


def read_card(path: Path) -> dict:
    """The card stored in an exported file (a card of an older layout is converted)."""
    meta = metadata(path)
    if CARD_KEY in meta:
        card = json.loads(meta[CARD_KEY])
        return check_card(card if "format" in card else _from_image_card_v1(card), str(path))
    if LEGACY_VIBRATION_KEY in meta:
        return check_card(_from_vibration_card_v1(json.loads(meta[LEGACY_VIBRATION_KEY])), str(path))
    raise ExportError(f"{path} carries no shopfloor model card; was it exported by shopfloor?")


def plain_metadata(card: dict) -> dict[str, str]:
    """A few plain keys beside the card, readable in any ONNX viewer (Netron's properties pane)."""
    plain = {"kind": card["kind"], "decision": card["decision"].get("rule", "")}
    if card["kind"] == IMAGE_CLASSIFIER:
        plain["classes"] = json.dumps(card["model"]["classes"])
        plain["image_size"] = str(card["input"]["preprocessing"]["image_size"])
    elif card["kind"] == IMAGE_ANOMALY:
        plain["image_size"] = str(card["input"]["preprocessing"]["image_size"])
        plain["threshold"] = repr(card["decision"]["threshold"])
    else:
        preprocessing = card["input"]["preprocessing"]
        plain["sample_rate"] = str(preprocessing["sample_rate"])
        plain["window"] = str(preprocessing["window"])
        plain["threshold"] = repr(card["decision"]["threshold"])
    return plain


def summary(card: dict) -> dict:
    """What the edge server signs into a manifest: enough for a device to check the file it gets."""
    return {key: card[key] for key in ("kind", "input", "outputs", "decision")} | {
        "model": {k: v for k, v in card["model"].items() if k in ("name", "classes")}
    }


def classes(card: dict) -> list[str]:
    """The class names of an image classifier, in output order."""
    if card["kind"] != IMAGE_CLASSIFIER:
        raise ExportError(f"a {card['kind']} model has no classes")
    return list(card["model"]["classes"])


def _from_image_card_v1(old: dict) -> dict:
    size = old["input"]["image_size"]
    return new_card(
        IMAGE_CLASSIFIER,
        model={"name": old.get("backbone"), "classes": old["classes"]},
        input={
            "name": old["input"].get("name", "grey"), "dtype": "float32", "shape": old["input"].get("shape"),
            "preprocessing": {"image_size": size, "resize": old["input"].get("resize"),
                              "values": old["input"].get("values"), "normalisation": "inside the model"},
        },
        outputs=[{"name": "probabilities", "shape": ["batch", len(old["classes"])],
                  "meaning": "class probabilities, in the order of model.classes"}],
        decision=old.get("decision") or {}, metrics=old.get("metrics", {}), lineage=old.get("lineage", {}),
        export=old.get("export", {}) | {"precision": old.get("precision")},
    )  # fmt: skip


def _from_vibration_card_v1(old: dict) -> dict:
    spec = old["input"]
    return new_card(
        VIBRATION_ANOMALY,
        model={"name": old["model"], "normal_profile": old["normal_profile"], "bearing": old["bearing"]},
        input={
            "name": spec["name"], "dtype": spec["dtype"], "shape": spec["shape"],
            "preprocessing": {k: spec[k] for k in ("sample_rate", "channels", "units", "window", "hop", "nominal_rpm")}
            | {"feature_set": old["feature_set"]},
        },
        outputs=[{"name": "score", "shape": ["batch"], "meaning": old["output"]["meaning"]}],
        decision=old["decision"] | {"explain": old["explain"]}, metrics=old.get("metrics", {}),
        lineage=old.get("lineage", {}), export=old.get("export", {}),
    )  # fmt: skip
