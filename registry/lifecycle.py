"""Aliases carry the lifecycle: `candidate` -> `champion` (approved for the edge) -> `previous-champion`.

Every alias move is written as an event (a run in the MLflow experiment `shopfloor-registry-events`:
when, who or which flow, from and to which version, gate results), so the history lives in the
same store as the models, SQLite or PostgreSQL alike. Moves made in the MLflow UI bypass shopfloor;
`reconcile` notices them (the alias differs from the last recorded event) and records them as
`ui-or-api` moves at the time they were noticed.

Approval records say who let a version reach devices: its gate passed when shopfloor judged it
(the flow or `registry approve`), or a named person approved it with a reason although a gate
failed. The record is a tag on the model version (`shopfloor.approval`, shown in the MLflow UI);
the edge server serves nothing without one.
"""

from __future__ import annotations

import getpass
import json
import time
from dataclasses import asdict, dataclass

import mlflow
from mlflow.exceptions import MlflowException

from core.errors import RegistryError

EVENTS_EXPERIMENT = "shopfloor-registry-events"
CANDIDATE, CHAMPION, PREVIOUS = "candidate", "champion", "previous-champion"


@dataclass(frozen=True)
class AliasEvent:
    time_ms: int
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    actor: str
    action: str
    gate: dict | None


APPROVAL_TAG = "shopfloor.approval"


@dataclass(frozen=True)
class Approval:
    by: str  # "flow:train-defect-classifier", "user:alice"
    how: str  # "gate": it passed; "override": approved although a gate failed, with a reason
    reason: str | None
    time_ms: int


def record_approval(
    client, model: str, version: str, by: str, how: str, reason: str | None = None
) -> Approval:
    """Write the approval on the version (and its approver as a plain tag the UI lists)."""
    if how == "override" and not (reason and reason.strip()):
        raise RegistryError("an override needs a reason: the history must say why")
    approval = Approval(by, how, reason, int(time.time() * 1000))
    client.set_model_version_tag(model, version, APPROVAL_TAG, json.dumps(asdict(approval)))
    client.set_model_version_tag(model, version, "approved_by", by)
    return approval


def approval_of(tags: dict[str, str]) -> Approval | None:
    """The version's approval, or None. Versions gated before approval records existed count as
    approved by their recorded gate (`gate_passed` = true)."""
    raw = tags.get(APPROVAL_TAG)
    if raw:
        try:
            return Approval(**json.loads(raw))
        except (ValueError, TypeError):
            return None
    if tags.get("gate_passed") == "true":
        return Approval("recorded gate", "gate", None, 0)
    return None


def alias_version(client: mlflow.MlflowClient, model: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def require_version(client: mlflow.MlflowClient, model: str, version: str):
    try:
        return client.get_model_version(model, version)
    except MlflowException:
        raise RegistryError(
            f"model {model!r} has no version {version!r}; see `shopfloor registry list {model}`"
        ) from None


def _events_experiment(client: mlflow.MlflowClient) -> str:
    found = client.get_experiment_by_name(EVENTS_EXPERIMENT)
    return found.experiment_id if found else client.create_experiment(EVENTS_EXPERIMENT)


def record_event(client: mlflow.MlflowClient, event: AliasEvent) -> None:
    tags = {
        "model": event.model, "alias": event.alias, "from_version": event.from_version or "",
        "to_version": event.to_version or "", "actor": event.actor, "action": event.action,
        "gate": json.dumps(event.gate) if event.gate else "", "time_ms": str(event.time_ms),
        "mlflow.runName": f"{event.model}:{event.alias} {event.from_version or '-'} -> {event.to_version or '-'}",
    }  # fmt: skip
    run = client.create_run(_events_experiment(client), tags=tags, start_time=event.time_ms)
    client.set_terminated(run.info.run_id, end_time=event.time_ms)


def history(client: mlflow.MlflowClient, model: str) -> list[AliasEvent]:
    """Every recorded alias move of `model`, oldest first."""
    found = client.get_experiment_by_name(EVENTS_EXPERIMENT)
    if not found:
        return []
    runs = client.search_runs(
        [found.experiment_id], filter_string=f"tags.model = '{model}'", max_results=50000
    )
    events = [
        AliasEvent(
            int(r.data.tags["time_ms"]), model, r.data.tags["alias"], r.data.tags["from_version"] or None,
            r.data.tags["to_version"] or None, r.data.tags["actor"], r.data.tags["action"],
            json.loads(r.data.tags["gate"]) if r.data.tags.get("gate") else None,
        )
        for r in runs
    ]  # fmt: skip
    return sorted(events, key=lambda e: e.time_ms)


def _last_recorded(events: list[AliasEvent], alias: str) -> str | None:
    moves = [e for e in events if e.alias == alias]
    return moves[-1].to_version if moves else None


def reconcile(client: mlflow.MlflowClient, model: str) -> list[AliasEvent]:
    """Record alias moves made outside shopfloor (e.g. in the MLflow UI) since the last event."""
    events = history(client, model)
    new = []
    for alias in (CHAMPION, PREVIOUS, CANDIDATE):
        current, recorded = alias_version(client, model, alias), _last_recorded(events, alias)
        if current != recorded and (current or recorded):
            event = AliasEvent(
                int(time.time() * 1000),
                model,
                alias,
                recorded,
                current,
                "mlflow-ui-or-api",
                "external-move",
                None,
            )
            record_event(client, event)
            new.append(event)
    return new


def move_alias(
    client: mlflow.MlflowClient,
    model: str,
    alias: str,
    version: str | None,
    actor: str,
    action: str,
    gate: dict | None = None,
) -> AliasEvent:
    """Point `alias` at `version` (None removes it) and record the move."""
    before = alias_version(client, model, alias)
    if version is None:
        if before is not None:
            client.delete_registered_model_alias(model, alias)
    else:
        client.set_registered_model_alias(model, alias, version)
    event = AliasEvent(int(time.time() * 1000), model, alias, before, version, actor, action, gate)
    record_event(client, event)
    return event


def promote(
    client: mlflow.MlflowClient,
    model: str,
    version: str,
    actor: str,
    gate: dict | None,
    action: str = "promote",
) -> list[AliasEvent]:
    """Make `version` champion; the old champion becomes previous-champion.

    Order matters for a kill between the two writes: previous-champion is set first, so a
    half-done promotion leaves the old champion in place, never a champion-less model.
    """
    require_version(client, model, version)
    reconcile(client, model)
    old = alias_version(client, model, CHAMPION)
    if old == version:
        raise RegistryError(f"{model} version {version} is already champion")
    events = []
    if old is not None:
        events.append(move_alias(client, model, PREVIOUS, old, actor, action, gate))
    events.append(move_alias(client, model, CHAMPION, version, actor, action, gate))
    return events


def release(client: mlflow.MlflowClient, model: str, version: str, gate: dict, passed: bool,
            auto_promote: bool, flow: str) -> bool:  # fmt: skip
    """Promote a gated candidate when it passed and the flow may promote on its own; True when it did."""
    promoted = passed and auto_promote
    if promoted:
        promote(client, model, version, actor_name(flow), gate)
    return promoted


def rollback(client: mlflow.MlflowClient, model: str, actor: str) -> list[AliasEvent]:
    """Champion goes back to previous-champion; the rolled-back version keeps its other tags."""
    reconcile(client, model)
    previous = alias_version(client, model, PREVIOUS)
    if previous is None:
        raise RegistryError(f"{model} has no previous-champion to roll back to")
    current = alias_version(client, model, CHAMPION)
    events = [move_alias(client, model, CHAMPION, previous, actor, "rollback")]
    events.append(move_alias(client, model, PREVIOUS, None, actor, "rollback"))
    if current is not None:
        client.set_model_version_tag(model, current, "rolled_back", "true")
    return events


def champion_at(events: list[AliasEvent], time_ms: int) -> str | None:
    """Which version was champion at a given moment: the answer to 'what ran on the line then?'"""
    current = None
    for event in events:
        if event.alias == CHAMPION and event.time_ms <= time_ms:
            current = event.to_version
    return current


def actor_name(flow: str | None = None) -> str:
    return f"flow:{flow}" if flow else f"user:{getpass.getuser()}"
