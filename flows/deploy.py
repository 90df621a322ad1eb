"""Deployments of every flow on the team stack's work pool, so a training starts from the Prefect UI
(or `prefect deployment run`) and runs on a worker, the same code path as the CLI.

  train-defect-classifier/team   parameters: data (a folder or DVC-tracked path), config, overrides, or
                                 data_version (a DVC hash the worker pulls from the DVC remote)
  train-image-anomaly/team       the same, for the line's image anomaly model (from good parts)
  retrain-anomaly-model/team     the same, for vibration; all three also start on drift events of their model
  monitor-drift/team             every `every_s`, over the stack's edge telemetry

The code comes from this checkout (the worker runs in it); the stack's MLflow is set through the
`tracking.tracking_uri` override, so a run started in the UI lands in the team's registry.

A run whose worker dies (its machine loses power) cannot say so itself: it would stay RUNNING and
hold its deployment's one slot, cancelling every later training. Flow runs send a heartbeat every
`heartbeat_s` (PREFECT_FLOWS_HEARTBEAT_FREQUENCY on the worker), and the automation Prefect documents
for "zombie" runs marks a run CRASHED after three missed heartbeats, which frees the slot.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from core.settings import HEARTBEAT_S
from flows.monitor.config import RetrainTarget
from flows.monitor.deployments import drift_trigger

REPO = Path(__file__).resolve().parents[1]
DEPLOYMENT = "team"
FLOWS = {  # flow name: (entrypoint, default data, the model whose drift events start it)
    "train-defect-classifier": ("flows/images/flow.py:train_defect_classifier", "data/magnetic_tiles", "defect-classifier"),
    "train-image-anomaly": ("flows/images/anomaly.py:train_image_anomaly", "data/magnetic_tiles", "magnetic_tiles-anomaly"),
    "retrain-anomaly-model": ("flows/vibration/flow.py:retrain_anomaly_model", "data/cwru_bearings", "bearing-anomaly"),
}  # fmt: skip


def deploy_all(
    pool: str, tracking_uri: str, edge_state: Path, every_s: int = 300, heartbeat_s: int = HEARTBEAT_S
) -> list[str]:
    """Create or update the deployments and the unresponsive-run automation; returns the deployments' ids."""
    from prefect import flow

    ids, tracking = [], [f"tracking.tracking_uri={tracking_uri}"]
    once = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    for entrypoint, data, model in FLOWS.values():
        loaded = flow.from_source(source=str(REPO), entrypoint=entrypoint)
        trigger = drift_trigger(
            RetrainTarget(model=model, data=Path(data), overrides=tuple(tracking)), str(edge_state)
        )
        ids.append(loaded.deploy(DEPLOYMENT, work_pool_name=pool, build=False, push=False, print_next_steps=False,
                                 parameters={"data": data, "overrides": tracking, "state": str(edge_state)},
                                 triggers=[trigger], concurrency_limit=once))  # fmt: skip
    monitor = flow.from_source(source=str(REPO), entrypoint="flows/monitor/flow.py:monitor_drift")
    ids.append(monitor.deploy(DEPLOYMENT, work_pool_name=pool, build=False, push=False, print_next_steps=False,
                              interval=timedelta(seconds=every_s), concurrency_limit=once,
                              parameters={"state_dir": str(edge_state), "tracking_uri": tracking_uri}))  # fmt: skip
    crash_unresponsive_runs(heartbeat_s)
    return [str(i) for i in ids]


UNRESPONSIVE = "crash unresponsive flow runs"


def crash_unresponsive_runs(heartbeat_s: int):
    """Prefect's automation for zombie runs (docs: "detect zombie flows"): after a deployment run's
    heartbeat, any event of that run must follow within three heartbeats, or the run is marked CRASHED.
    Deployment runs only: they hold a deployment's slot, and a script of someone's own, run against
    the stack with Prefect's default heartbeat (180 s), must not be crashed while it works. Created
    once, updated in place when the heartbeat changes."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    automation = Automation(
        name=UNRESPONSIVE,
        description=f"Marks a flow run CRASHED when {3 * heartbeat_s} s pass without its heartbeat (every {heartbeat_s} s).",
        trigger=EventTrigger(after={"prefect.flow-run.heartbeat"}, expect={"prefect.flow-run.*"},
                             match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                             match_related=ResourceSpecification({"prefect.resource.role": "deployment"}),
                             for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
                             within=timedelta(seconds=3 * heartbeat_s)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {3 * heartbeat_s} s: its worker or machine stopped")],
    )  # fmt: skip
    try:
        existing = Automation.read(name=UNRESPONSIVE)
    except ValueError:
        return automation.create()
    automation.id = existing.id
    automation.update()
    return automation


def submit(flow_name: str, parameters: dict) -> tuple[str, str]:
    """Start `flow_name`'s team deployment on the Prefect server of PREFECT_API_URL without waiting;
    returns the flow run's id and its page in the Prefect UI."""
    import os

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    name = f"{flow_name}/{DEPLOYMENT}"
    with get_client(
        sync_client=True
    ) as client:  # the deployment's own overrides (the team's MLflow) come first
        defaults = client.read_deployment_by_name(name).parameters.get("overrides") or []
    overrides = list(defaults) + list(parameters.get("overrides") or [])
    run = run_deployment(name, parameters=parameters | {"overrides": overrides}, timeout=0)
    ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
    return str(run.id), f"{ui}/runs/flow-run/{run.id}"
