"""`shopfloor registry set-threshold`: ship another reject threshold of an image model, no retraining.

A registered version's files never change (what ran on the line stays answerable), so a new threshold
is a new version: the same network with its card's decision changed, registered from a run nested
under the source run (which lends it the frozen evaluation set and the fp32 reference), judged by the
same gate as any candidate (the reject-decision checks now at the new threshold) and, when the source
is the champion and the gate passes, promoted with action `set-threshold` in the alias history.
Devices switch on their next pull like for any new champion (canaries first). The new version keeps
its source's monitoring reference (for an image anomaly model, its alarm rate at the new threshold), so
drift monitoring goes on across the change.

A classifier's threshold is a defect probability, picked from the card's held-out table. An image
anomaly model's is a score, and a score's meaning depends on the camera: a threshold set on the
validation position's good parts can reject half the good parts of another position (RESULTS.md, ball
screws). So it is calibrated on good images of the line's own camera (`--good-images DIR
--false-reject-rate R`), the way anomalib sets its threshold, on good images only.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np

from core.card import IMAGE_ANOMALY, IMAGE_CLASSIFIER, read_card
from core.errors import ConfigError, DataError, RegistryError
from export.metadata import save_card, write_card
from inputs.images import IMAGE_SUFFIXES
from registry import image_anomaly
from registry.artifacts import shipped_file
from registry.config import ImageAnomalyPromotionConfig, PromotionConfig
from registry.gates import GateReport
from registry.images import FP32_TAG, frozen_set_of, gate_file, log_edge_file, score_onnx
from registry.lifecycle import (
    CHAMPION,
    AliasEvent,
    actor_name,
    alias_version,
    promote,
    record_approval,
    require_version,
)
from registry.publish import register
from registry.references import log_reference, reference_loader
from registry.review import describe, gate_section, reject_section
from training.images.anomaly import part_figures
from training.images.patchcore import threshold_for
from training.images.reject_rule import row_for

# the verdict and the people's marks belong to the version judged, not to the one made from it
NOT_INHERITED = ("gate_passed", "gate_report", "gate_champion_compared", "shopfloor.approval", "approved_by",
                 "rolled_back", "flow", "shopfloor.threshold_from", "shopfloor.reference")  # fmt: skip
# where each kind's card keeps its threshold
THRESHOLD_KEY = {IMAGE_CLASSIFIER: "defect_threshold", IMAGE_ANOMALY: "threshold"}


@dataclass(frozen=True)
class ThresholdChange:
    model: str
    source: str  # the version whose network is reused
    version: str  # the new version
    before: float
    after: float
    gate: GateReport
    events: list[AliasEvent]


def pick_threshold(card: dict, threshold: float | None, false_reject_rate: float | None,
                   defect_recall: float | None) -> float:  # fmt: skip
    """The threshold asked for: a number, or the card's held-out table row for a false-reject rate or recall."""
    if sum(x is not None for x in (threshold, false_reject_rate, defect_recall)) != 1:
        raise ConfigError("give one of --threshold T, --false-reject-rate R or --defect-recall R")
    if threshold is not None:
        if not 0 <= threshold <= 1:
            raise ConfigError(f"--threshold {threshold}: a defect probability, between 0 and 1")
        return threshold
    table = card["metrics"].get("reject_table")
    if not table:
        raise RegistryError(
            "this version's card has no recall vs false-reject table (exported before it existed); use --threshold"
        )
    row = row_for(table, false_reject_rate, defect_recall)
    if row is None:
        asked = (
            f"--false-reject-rate {false_reject_rate}"
            if false_reject_rate is not None
            else f"--defect-recall {defect_recall}"
        )
        raise RegistryError(
            f"{asked}: no threshold in the held-out table reaches it; see the table and use --threshold"
        )
    return float(row["threshold"])


def source_card(model: str, version: str, scratch: Path) -> tuple[Path, dict]:
    """The version's shipped file and its card; one line when it is no image model with a threshold."""
    require_version(mlflow.MlflowClient(), model, version)
    source = shipped_file(model, version, scratch / "source")
    card = read_card(source)
    key = THRESHOLD_KEY.get(card["kind"])
    if key is None or card["decision"].get(key) is None:
        raise RegistryError(
            f"{model} v{version} makes no reject decision (a {card['kind']} without an ok class)"
        )
    return source, card


def calibrate_on_good_images(source: Path, folder: Path, false_reject_rate: float) -> tuple[float, str]:
    """An image anomaly file's threshold for rejecting at most `false_reject_rate` of the good images in
    `folder` (the line's own camera), and words for the card saying where it came from."""
    if not 0 <= false_reject_rate < 1:
        raise ConfigError(f"--false-reject-rate {false_reject_rate}: a share of good parts, from 0 up to 1")
    if not folder.is_dir():
        raise ConfigError(
            f"--good-images {folder}: no such folder; give a folder of good images from the line's camera"
        )
    paths = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < 20:
        raise DataError(
            f"--good-images {folder}: {len(paths)} images; at least 20 good images set a threshold"
        )
    scores = image_anomaly.score_file(source, paths)
    threshold = threshold_for(scores, false_reject_rate)
    rejected = float(np.mean(scores > threshold))
    return threshold, f"{len(paths)} good images in {folder} ({rejected:.1%} of them above it)"


def set_threshold(cfg: PromotionConfig | ImageAnomalyPromotionConfig, model: str, version: str, threshold: float,
                  reason: str, override_reason: str | None = None, chosen_on: str | None = None) -> ThresholdChange:  # fmt: skip
    """Register `version`'s network with reject threshold `threshold`, gate it, and promote it when
    `version` is champion and the gate passes (or a person overrides with a reason). `cfg`: the gate of
    the version's kind; `chosen_on`: where the threshold came from, for the card."""
    if not reason.strip():
        raise ConfigError("--reason '...' is required: the history must say why the threshold moved")
    client, who = mlflow.MlflowClient(), actor_name()
    found = require_version(client, model, version)
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        source, card = source_card(model, version, scratch)
        key = THRESHOLD_KEY[card["kind"]]
        before = float(card["decision"][key])
        target = scratch / ("model.int8.onnx" if card["kind"] == IMAGE_CLASSIFIER else "image_anomaly.onnx")
        shutil.copy(source, target)
        card["decision"] |= {key: threshold, "reject_rule": {
            "words": f"set by {who}: {reason}", "chosen_on": chosen_on or f"the held-out table of v{version}",
            "from_version": version, "from_threshold": before}}  # fmt: skip
        write_card(target, card)
        new, gate = _register_and_gate(cfg, found, target, card, scratch)
    new_version = new.version
    passed = gate.passed or override_reason is not None
    events = []
    if passed and alias_version(client, model, CHAMPION) == version:
        record_approval(
            client, model, new_version, who, "gate" if gate.passed else "override", override_reason
        )
        summary = gate.to_dict() | {"threshold": {"from": before, "to": threshold}, "reason": reason}
        events = promote(client, model, new_version, who, summary | ({"override_reason": override_reason} if override_reason else {}),
                         action="set-threshold")  # fmt: skip
    change = ThresholdChange(model, version, new_version, before, threshold, gate, events)
    describe(client, model, new_version, new.run_id, _page(change, card, who, reason))
    if not passed:
        raise RegistryError(
            f"{model} v{new_version} (threshold {threshold:.4f}) fails the promotion gate and stays a candidate:\n  "
            + "\n  ".join(gate.failures()) + "\nTo ship it anyway, pass --override-gates (the reason is recorded)."
        )  # fmt: skip
    return change


def _register_and_gate(cfg, found, target: Path, card: dict, scratch: Path):
    """The new version from a run nested under the source run (its frozen test set and monitoring
    reference carried over), its card measured at the new threshold, gated."""
    source_run = mlflow.get_run(found.run_id)
    frozen_csv = mlflow.artifacts.download_artifacts(run_id=found.run_id, artifact_path="promotion/frozen_eval.csv",
                                                     dst_path=str(scratch / "frozen"))  # fmt: skip
    rule = card["decision"]["reject_rule"]
    name = f"set-threshold v{found.version}: {rule['from_threshold']:.4g} -> {card['decision'][THRESHOLD_KEY[card['kind']]]:.4g}"
    tags = {"mlflow.parentRunId": found.run_id, FP32_TAG: source_run.data.tags.get(FP32_TAG, "")}
    with mlflow.start_run(experiment_id=source_run.info.experiment_id, run_name=name, tags=tags) as run:
        mlflow.log_artifact(frozen_csv, "promotion")
        frozen = frozen_set_of(run.info.run_id)
        measure = _measure_classifier if card["kind"] == IMAGE_CLASSIFIER else _measure_anomaly
        uri = measure(target, card, frozen, scratch)
        mlflow.log_params({"from_version": found.version, "from_threshold": rule["from_threshold"]})
        inherited = {k: v for k, v in found.tags.items() if k not in NOT_INHERITED}
        new = register(uri, found.name, inherited | {"shopfloor.threshold_from": f"v{found.version}"})
        if card["kind"] == IMAGE_CLASSIFIER:
            report = gate_file(cfg, found.name, new.version, target, run.info.run_id)
        else:
            report = image_anomaly.gate_file(cfg, found.name, new.version, target)
        _carry_reference(found, new.version, card)
    return new, report


def _measure_classifier(target: Path, card: dict, frozen, scratch: Path) -> str:
    """The operating point at the new threshold on the frozen set, into the card; the logged model's URI."""
    point = score_onnx(target, frozen)["operating_point"]
    card["metrics"]["operating_point"] = asdict(point) | {"measured_on": "held-out test parts, this file"}
    write_card(target, card)
    mlflow.log_params({"defect_threshold": point.threshold})
    mlflow.log_metrics(
        {"test_defect_recall": point.defect_recall, "test_false_reject_rate": point.false_reject_rate}
    )
    mlflow.log_artifact(str(save_card(card, scratch / "model_card.json")), "export")
    return log_edge_file(target, card)


def _measure_anomaly(target: Path, card: dict, frozen, scratch: Path) -> str:
    """The file's test figures at the new threshold (what the anomaly gate judges), into the card."""
    from export.images.patchcore import ImageAnomalyExport

    scores = image_anomaly.score_file(target, frozen["path"].tolist())
    good = (frozen["label"] == card["decision"]["good_class"]).to_numpy()
    figures = part_figures(scores, good, card["decision"]["threshold"]).flat("onnx_test_")
    card["metrics"] = {k: v for k, v in card["metrics"].items() if not k.startswith("onnx_test_")} | figures
    write_card(target, card)
    mlflow.log_params({"threshold": card["decision"]["threshold"]})
    mlflow.log_metrics(figures)
    exported = ImageAnomalyExport(target, save_card(card, scratch / "model_card.json"),
                                  card["export"]["parity_max_abs"], card)  # fmt: skip
    return image_anomaly.log_image_anomaly_model(exported)


def _carry_reference(found, version: str, card: dict) -> None:
    """The source's monitoring reference for the new version: the same network sees the same images; an
    anomaly model's expected alarm rate is recounted at the new threshold."""
    reference = reference_loader(mlflow.get_tracking_uri())(found.name, found.version)
    if reference is None:
        return
    if card["kind"] == IMAGE_ANOMALY:
        threshold = card["decision"]["threshold"]
        reference |= {
            "threshold": threshold,
            "alarm_rate": float(np.mean(np.asarray(reference["scores"]) > threshold)),
        }
    log_reference(mlflow.MlflowClient(), found.name, version, reference)


def _page(change: ThresholdChange, card: dict, who: str, reason: str) -> str:
    state = "champion" if change.events else "candidate"
    return "\n".join([
        f"## {change.model} version {change.version}: {state}",
        f"Reject threshold {change.before:.4f} -> **{change.after:.4f}**, set by {who}: {reason}. "
        f"The same network as version {change.source}; only the card's decision differs (no retraining).", "",
        *(reject_section(card) if card["kind"] == IMAGE_CLASSIFIER else _anomaly_rule(card)), "",
        *gate_section(change.gate),
    ])  # fmt: skip


def _anomaly_rule(card: dict) -> list[str]:
    m, decision = card["metrics"], card["decision"]
    caught = (f" and caught **{m['onnx_test_defect_recall']:.1%}** of defect parts"
              if "onnx_test_defect_recall" in m else "")  # fmt: skip
    return ["### Reject rule",
            f"Threshold chosen on {decision['reject_rule']['chosen_on']}. The device rejects a part when its anomaly "
            f"score > **{decision['threshold']:.4g}**: on the held-out test parts this file rejected "
            f"**{m['onnx_test_false_reject_rate']:.1%}** of good parts{caught}."]  # fmt: skip
