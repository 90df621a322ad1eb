"""`shopfloor registry approve` for every kind of model: judge the version's file with its kind's gate.

A version may reach a device only with an approval record (registry.lifecycle.approval_of): its
gate passed when shopfloor judged it, or a named person approved it with a reason although a gate
failed. The edge server reads that record before serving anything, so an alias moved by hand in
the MLflow UI to a version without one is refused there (edge.catalog) until someone approves it
here.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mlflow

from core.card import IMAGE_ANOMALY, IMAGE_CLASSIFIER, read_card
from core.errors import RegistryError
from registry.artifacts import shipped_file
from registry.gates import GateReport
from registry.lifecycle import (
    CHAMPION,
    AliasEvent,
    actor_name,
    alias_version,
    promote,
    reconcile,
    record_approval,
    record_event,
    require_version,
)


def _judge(kind: str, promotion_for: Callable[[str], object], model: str, version: str, candidate: Path,
           run_id: str) -> GateReport:  # fmt: skip
    if kind == IMAGE_CLASSIFIER:
        from registry.images import gate_file

        return gate_file(promotion_for(kind), model, version, candidate, run_id)
    if kind == IMAGE_ANOMALY:
        from registry.image_anomaly import gate_file

        return gate_file(promotion_for(kind), model, version, candidate)
    from registry.vibration import gate_file

    return gate_file(promotion_for(kind), model, version, candidate)


def approve(promotion_for: Callable[[str], object], model: str, version: str,
            override_reason: str | None = None) -> tuple[GateReport, list[AliasEvent]]:  # fmt: skip
    """Judge `version`'s file now with its kind's gate (`promotion_for(kind)`: that kind's promotion
    settings) and make it champion when it passes, or when a person overrides with a reason. A version
    already champion (moved in the MLflow UI) keeps the alias and gets the approval, so the edge
    server serves it."""
    client = mlflow.MlflowClient()
    found = require_version(client, model, version)
    with tempfile.TemporaryDirectory() as scratch:
        candidate = shipped_file(model, version, Path(scratch))
        kind = read_card(candidate)["kind"]
        report = _judge(kind, promotion_for, model, version, candidate, found.run_id)
    if not report.passed and override_reason is None:
        raise RegistryError(
            f"{model} v{version} fails the {kind} promotion gate:\n  " + "\n  ".join(report.failures())
            + "\nTo ship it anyway, pass --override-gates --reason '...' (recorded in the history)."
        )  # fmt: skip
    who = actor_name()
    record_approval(client, model, version, who, "gate" if report.passed else "override", override_reason)
    gate = report.to_dict() | ({"override_reason": override_reason} if override_reason else {})
    reconcile(client, model)
    if alias_version(client, model, CHAMPION) == version:  # moved by hand earlier: approve it where it is
        event = AliasEvent(int(time.time() * 1000), model, CHAMPION, version, version, who, "approve", gate)
        record_event(client, event)
        return report, [event]
    return report, promote(client, model, version, who, gate)
