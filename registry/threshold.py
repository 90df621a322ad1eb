"""`shopfloor registry set-threshold`: ship another reject threshold of an image classifier, no retraining.

A registered version's files never change (what ran on the line stays answerable), so a new threshold
is a new version: the same network with its card's decision changed, registered from a run nested
under the source run (which lends it the frozen evaluation set and the fp32 reference), judged by the
same gate as any candidate (the reject-decision checks now at the new threshold) and, when the source
is the champion and the gate passes, promoted with action `set-threshold` in the alias history.
Devices switch on their next pull like for any new champion (canaries first).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow

from core.card import IMAGE_CLASSIFIER, read_card
from core.errors import ConfigError, RegistryError
from export.metadata import save_card, write_card
from registry.artifacts import shipped_file
from registry.config import PromotionConfig
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
from registry.review import describe, gate_section, reject_section
from training.images.reject_rule import row_for

# the verdict and the people's marks belong to the version judged, not to the one made from it
NOT_INHERITED = ("gate_passed", "gate_report", "gate_champion_compared", "shopfloor.approval", "approved_by",
                 "rolled_back", "flow", "shopfloor.threshold_from")  # fmt: skip


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
    """The version's shipped file and its card; one line when it is no image classifier with a threshold."""
    require_version(mlflow.MlflowClient(), model, version)
    source = shipped_file(model, version, scratch / "source")
    card = read_card(source)
    if card["kind"] != IMAGE_CLASSIFIER or card["decision"].get("defect_threshold") is None:
        raise RegistryError(
            f"{model} v{version} makes no reject decision (a {card['kind']} without an ok class)"
        )
    return source, card


def set_threshold(cfg: PromotionConfig, model: str, version: str, threshold: float, reason: str,
                  override_reason: str | None = None) -> ThresholdChange:  # fmt: skip
    """Register `version`'s network with reject threshold `threshold`, gate it, and promote it when
    `version` is champion and the gate passes (or a person overrides with a reason)."""
    if not reason.strip():
        raise ConfigError("--reason '...' is required: the history must say why the threshold moved")
    client, who = mlflow.MlflowClient(), actor_name()
    found = require_version(client, model, version)
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        source, card = source_card(model, version, scratch)
        before = float(card["decision"]["defect_threshold"])
        target = scratch / "model.int8.onnx"
        shutil.copy(source, target)
        card["decision"] |= {"defect_threshold": threshold, "reject_rule": {
            "words": f"set by {who}: {reason}", "chosen_on": f"the held-out table of v{version}",
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


def _register_and_gate(cfg: PromotionConfig, found, target: Path, card: dict, scratch: Path):
    """The new version from a run nested under the source run, its card measured at the new threshold, gated."""
    source_run = mlflow.get_run(found.run_id)
    frozen_csv = mlflow.artifacts.download_artifacts(run_id=found.run_id, artifact_path="promotion/frozen_eval.csv",
                                                     dst_path=str(scratch / "frozen"))  # fmt: skip
    name = f"set-threshold v{found.version}: {card['decision']['reject_rule']['from_threshold']:.4f} -> {card['decision']['defect_threshold']:.4f}"
    tags = {"mlflow.parentRunId": found.run_id, FP32_TAG: source_run.data.tags.get(FP32_TAG, "")}
    with mlflow.start_run(experiment_id=source_run.info.experiment_id, run_name=name, tags=tags) as run:
        mlflow.log_artifact(frozen_csv, "promotion")
        point = score_onnx(target, frozen_set_of(run.info.run_id))["operating_point"]
        card["metrics"]["operating_point"] = asdict(point) | {"measured_on": "held-out test parts, this file"}
        write_card(target, card)
        mlflow.log_params({"defect_threshold": point.threshold, "from_version": found.version,
                           "from_threshold": card["decision"]["reject_rule"]["from_threshold"]})  # fmt: skip
        mlflow.log_metrics(
            {"test_defect_recall": point.defect_recall, "test_false_reject_rate": point.false_reject_rate}
        )
        mlflow.log_artifact(str(save_card(card, scratch / "model_card.json")), "export")
        uri = log_edge_file(target, card)
        inherited = {k: v for k, v in found.tags.items() if k not in NOT_INHERITED}
        new = register(uri, found.name, inherited | {"shopfloor.threshold_from": f"v{found.version}"})
        report = gate_file(cfg, found.name, new.version, target, run.info.run_id)
    return new, report


def _page(change: ThresholdChange, card: dict, who: str, reason: str) -> str:
    state = "champion" if change.events else "candidate"
    return "\n".join([
        f"## {change.model} version {change.version}: {state}",
        f"Reject threshold {change.before:.4f} -> **{change.after:.4f}**, set by {who}: {reason}. "
        f"The same network as version {change.source}; only the card's decision differs (no retraining).", "",
        *reject_section(card), "", *gate_section(change.gate),
    ])  # fmt: skip
