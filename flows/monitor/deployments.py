"""The loop as Prefect deployments: `monitor-drift` on a schedule, and a training deployment per
retraining target (the vibration model, and each image product line's model: its classifier or its
image anomaly model, as the target's `kind` says), each started by a
deployment trigger on `shopfloor.drift.detected` events of its model.

`shopfloor monitor serve` serves all three from one process (Prefect's `serve`: flow runs are
child processes of it, no work pool needed); a team server (`PREFECT_API_URL`) sees them in its UI
under Deployments and Automations. The trigger passes the drifted device to the training flow,
whose new version, once its gate passes, reaches that device first (flows.rollout). A concurrency
limit of one per retraining deployment, with new runs cancelled, keeps a burst of events (a whole
line drifting at once) from starting a burst of training runs. Cycles never overlap either: on a
busy machine a cycle can outlast its interval, and two cycles reading the same new windows would
judge them twice.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.events import DeploymentEventTrigger

from flows.monitor.config import LoopConfig, RetrainTarget
from flows.monitor.flow import EVENT, monitor_drift

MONITOR_DEPLOYMENT = "scheduled"
RETRAIN_DEPLOYMENT = "on-drift"


def drift_trigger(target: RetrainTarget, state: str) -> DeploymentEventTrigger:
    """Fires once per drift event of `target.model` (each device counts on its own) and starts the
    training flow with the event's device; the rest of the parameters are the target's."""
    return DeploymentEventTrigger(
        name=f"retrain {target.model} on drift",
        expect={EVENT},
        match={"prefect.resource.id": "shopfloor.device.*", "shopfloor.model": target.model},
        for_each={"prefect.resource.id"},
        threshold=1,
        within=timedelta(0),
        parameters={
            "data": str(target.data),
            "config": str(target.config) if target.config else None,
            "overrides": list(target.overrides),
            "device": "{{ event.payload.device }}",
            "state": state,
        },  # fmt: skip
    )


def loop_deployments(cfg: LoopConfig) -> list:
    """The three deployments of the loop, ready for `prefect.serve`."""
    from flows.images.anomaly import train_image_anomaly
    from flows.images.flow import train_defect_classifier
    from flows.vibration.flow import retrain_anomaly_model

    state = str(cfg.monitor.state_dir)
    limit = ConcurrencyLimitConfig(
        limit=cfg.retrain_concurrency, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
    )
    monitor = monitor_drift.to_deployment(
        MONITOR_DEPLOYMENT,
        interval=timedelta(seconds=cfg.every_s),
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
        ),
        parameters={"state_dir": state, "tracking_uri": cfg.monitor.tracking_uri, "alpha": cfg.monitor.alpha},
    )
    targets = [(retrain_anomaly_model, cfg.vibration, RETRAIN_DEPLOYMENT)] + [
        (train_image_anomaly if target.kind == "image-anomaly" else train_defect_classifier, own_model(target),
         RETRAIN_DEPLOYMENT if i == 0 else f"{RETRAIN_DEPLOYMENT}-{target.model}")
        for i, target in enumerate(cfg.images)
    ]  # fmt: skip
    retrain = [
        flow.to_deployment(
            name,
            triggers=[drift_trigger(target, state)],
            concurrency_limit=limit,
            parameters={"data": str(target.data)},
        )  # fmt: skip
        for flow, target, name in targets
    ]
    return [monitor, *retrain]


def own_model(target: RetrainTarget) -> RetrainTarget:
    """An image line's retraining trains the model whose drift started it (`tracking.model_name`), not
    whatever name its data's line would derive; the target's own overrides come after and win."""
    return target.model_copy(update={"overrides": (f"tracking.model_name={target.model}", *target.overrides)})
