"""Deployments of every flow on the team stack's work pool, so a training starts from the Prefect UI
(or `prefect deployment run`) and runs on a worker, the same code path as the CLI.

  train-defect-classifier/team   parameters: data (a folder or DVC-tracked path), config, overrides, or
                                 data_version (a DVC hash the worker pulls from the DVC remote)
  retrain-anomaly-model/team     the same, for vibration; both also start on drift events of their model
  monitor-drift/team             every `every_s`, over the stack's edge telemetry

The code comes from this checkout (the worker runs in it); the stack's MLflow is set through the
`tracking.tracking_uri` override, so a run started in the UI lands in the team's registry.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from flows.monitor.config import RetrainTarget
from flows.monitor.deployments import drift_trigger

REPO = Path(__file__).resolve().parents[1]
DEPLOYMENT = "team"
FLOWS = {  # flow name: (entrypoint, default data)
    "train-defect-classifier": ("flows/images/flow.py:train_defect_classifier", "data/magnetic_tiles"),
    "retrain-anomaly-model": ("flows/vibration/flow.py:retrain_anomaly_model", "data/cwru_bearings"),
}


def deploy_all(pool: str, tracking_uri: str, edge_state: Path, every_s: int = 300) -> list[str]:
    """Create or update the deployments; returns their ids."""
    from prefect import flow

    ids, tracking = [], [f"tracking.tracking_uri={tracking_uri}"]
    once = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    for name, (entrypoint, data) in FLOWS.items():
        loaded = flow.from_source(source=str(REPO), entrypoint=entrypoint)
        model = "defect-classifier" if "defect" in name else "bearing-anomaly"
        trigger = drift_trigger(
            RetrainTarget(model=model, data=Path(data), overrides=tuple(tracking)), str(edge_state)
        )
        ids.append(loaded.deploy(DEPLOYMENT, work_pool_name=pool, build=False, push=False, print_next_steps=False,
                                 parameters={"data": data, "overrides": tracking, "state": str(edge_state)},
                                 triggers=[trigger], concurrency_limit=once))  # fmt: skip
    monitor = flow.from_source(source=str(REPO), entrypoint="flows/monitor/flow.py:monitor_drift")
    ids.append(monitor.deploy(DEPLOYMENT, work_pool_name=pool, build=False, push=False, print_next_steps=False,
                              interval=timedelta(seconds=every_s),
                              parameters={"state_dir": str(edge_state), "tracking_uri": tracking_uri}))  # fmt: skip
    return [str(i) for i in ids]


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
