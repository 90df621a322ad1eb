"""Prefect flow `monitor-drift`: one monitoring cycle, logged as one MLflow run; drift raises an event.

Deployed on a schedule (flows.deploy); `shopfloor monitor run` runs one cycle now. Each device that
newly enters drift emits `shopfloor.drift.detected` (resource: the device; labels: model, version,
line; payload: the explanation), which a deployment trigger turns into a retraining run; a camera
that newly enters drift is also asked for the images of that window (edge.samples), for labelling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from core.card import IMAGE_KINDS
from edge.samples import SampleStore
from edge.telemetry import TelemetryStore
from flows.monitor.config import MonitorConfig
from flows.monitor.report import cycle_html
from monitor.cycle import CycleReport, run_cycle
from monitor.detect import Rules
from monitor.store import DeviceState, MonitorStore
from registry.references import reference_loader
from registry.tracking import TrackingConfig, configure

FLOW_NAME = "monitor-drift"
EVENT = "shopfloor.drift.detected"


@dataclass(frozen=True)
class MonitorSummary:
    run_id: str
    windows: int
    drift: list[str]  # devices in drift after this cycle
    newly_drifted: list[str]
    events: int
    skipped: int = 0  # windows of versions without a drift reference


@task(name="judge-windows", cache_policy=NO_CACHE)
def judge(cfg: MonitorConfig) -> CycleReport:
    telemetry = TelemetryStore(cfg.state_dir / "telemetry.db")
    store = MonitorStore(cfg.state_dir / "monitor.db")
    models = list(cfg.models) or sorted({w.window.model for _, w in telemetry.windows(limit=1_000_000)})
    rules = Rules(cfg.alpha, cfg.persist_k, cfg.persist_n, cfg.permutations)
    return run_cycle(telemetry, store, reference_loader(cfg.tracking_uri), models, rules)


@task(name="raise-events", cache_policy=NO_CACHE)
def raise_events(cfg: MonitorConfig) -> list[DeviceState]:
    """One event per drift episode not yet announced: this cycle's new ones, and any a cycle that
    died after judging its windows left behind (monitor.store)."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    store, announced = MonitorStore(cfg.state_dir / "monitor.db"), []
    for state in store.unannounced():
        event = emit_event(
            event=EVENT,
            resource={"prefect.resource.id": f"shopfloor.device.{state.device}", "shopfloor.model": state.model,
                      "shopfloor.version": str(state.version), "shopfloor.line": cfg.line},
            payload={"device": state.device, "model": state.model, "version": state.version,
                     "explanation": state.explanation, "q_value": state.q_value, "since": state.since},
        )  # fmt: skip
        if event is not None:  # None: Prefect could not take it; the next cycle tries again
            EventsWorker.drain_all(timeout=10)  # sent before it counts as announced
            store.announce(state)
            announced.append(state)
    return announced


@task(name="request-samples", cache_policy=NO_CACHE)
def request_samples(cfg: MonitorConfig, drifted: list[DeviceState]) -> list[str]:
    """Ask each camera that newly drifted for the images of the window that tipped it, so they are
    waiting for `shopfloor monitor samples DEVICE` (labelling) by the time a person looks."""
    telemetry, samples = (
        TelemetryStore(cfg.state_dir / "telemetry.db"),
        SampleStore(cfg.state_dir / "samples"),
    )
    asked = []
    for state in drifted:
        window = telemetry.get(state.device, state.last_window) if state.last_window else None
        if window is not None and window.kind in IMAGE_KINDS:  # a camera: its images can be labelled
            samples.request(state.device, state.last_window, by="monitor")
            asked.append(f"{state.device}/{state.last_window}")
    return asked


def _log(cfg: MonitorConfig, report: CycleReport, out: Path) -> None:
    mlflow.log_params(
        {
            "alpha": cfg.alpha,
            "persist": f"{cfg.persist_k} of {cfg.persist_n}",
            "permutations": cfg.permutations,
        }
    )
    mlflow.log_metrics({"windows": len(report.assessments), "skipped_windows": report.skipped,
                        "devices_in_drift": sum(s.state == "drift" for s in report.states)})  # fmt: skip
    for state in report.states:
        key = f"{state.device}.{state.model}".replace("/", "_")
        mlflow.log_metrics({f"q.{key}": state.q_value if state.q_value is not None else 1.0,
                            f"drift.{key}": float(state.state == "drift")}
                           | ({f"accuracy.{key}": state.accuracy} if state.accuracy is not None else {}))  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "drift_report.html").write_text(cycle_html(report, cfg.alpha))
    mlflow.log_artifact(str(out / "drift_report.html"), "monitoring")


@flow(name=FLOW_NAME, log_prints=True)
def monitor_drift(state_dir: str = str(MonitorConfig().state_dir), tracking_uri: str = MonitorConfig().tracking_uri,
                  alpha: float = MonitorConfig().alpha) -> MonitorSummary:  # fmt: skip
    """Judge every new telemetry window against its version's reference; log the cycle; raise drift events."""
    cfg = MonitorConfig(state_dir=Path(state_dir), tracking_uri=tracking_uri, alpha=alpha)
    configure(TrackingConfig(tracking_uri=cfg.tracking_uri, experiment=cfg.experiment))
    with mlflow.start_run(run_name="drift cycle") as run:
        report = judge(cfg)
        _log(cfg, report, cfg.state_dir / "reports" / run.info.run_id)
        announced = raise_events(cfg)
        request_samples(cfg, announced)
    drift = sorted(f"{s.device}/{s.model}" for s in report.states if s.state == "drift")
    return MonitorSummary(run.info.run_id, len(report.assessments), drift,
                          [f"{s.device}/{s.model}" for s in report.newly_drifted], len(announced), report.skipped)  # fmt: skip
