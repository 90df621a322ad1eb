"""Prefect flow `retrain-anomaly-model`: checks -> features -> train -> evaluate -> MLflow log -> register
-> ONNX export (with parity) -> gate -> promote.

Each task is a thin wrapper around one stage function; the flow owns the MLflow run, so every
task's output lands in the same place. The ONNX file is exported and verified before anything is
registered, and `champion` moves only in the last task, after the gate passed: a failed run
(MLflow status FAILED) registers nothing and never moves champion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from core.config import load_config
from core.onnx_runtime import cpu_facts
from core.settings import DEFAULT_EDGE_STATE
from data_checks.report import write_checks_html
from data_checks.versioning import dvc_data_version
from data_checks.vibration.gate import CheckedSensorData, check_sensor_data
from export.vibration.onnx import onnx_scores
from export.vibration.stage import AnomalyExport, export_anomaly_model
from flows.report import console, print_findings
from flows.rollout import canary_first
from flows.vibration.config import AnomalyJobConfig
from inputs.vibration.features import FEATURE_SET
from inputs.vibration.overlap import ARTIFACT as TRAINING_BLOCKS
from inputs.vibration.overlap import training_fingerprint
from monitor.reference import vibration_reference
from registry import publish
from registry.references import log_reference
from registry.review import anomaly_page, describe
from registry.tracking import configure, fail_abandoned_runs, git_commit, process_tags
from registry.vibration import log_anomaly_model, release_anomaly
from training.vibration.dataset import AnomalyDataset, add_device_rows, build_dataset
from training.vibration.evaluate import ProtocolReport, evaluate_protocol
from training.vibration.plots import protocol_plots
from training.vibration.report import protocol_markdown
from training.vibration.train import AnomalyTrainResult, train_anomaly_model

FLOW_NAME = "retrain-anomaly-model"


@dataclass(frozen=True)
class AnomalyRunSummary:
    run_id: str
    model_name: str
    model_version: str
    model: str
    false_alarm_rate: float
    auroc_all_faults: float
    threshold: float
    gate_passed: bool
    promoted: bool
    gate_failures: tuple[str, ...]
    onnx_path: str


@task(name="check-sensor-data", cache_policy=NO_CACHE)
def check_data(cfg: AnomalyJobConfig, data: Path, out_dir: Path) -> CheckedSensorData:
    checked = check_sensor_data(data, cfg.data.declared, cfg.data.rules, out_dir)
    print_findings(checked.findings, "Sensor checks")
    blocks = training_fingerprint(
        [r.record for r in checked.records], cfg.data.normal_labels, cfg.split.calibration_end
    )
    mlflow.log_dict(blocks, TRAINING_BLOCKS)  # scoring warns when a file overlaps these
    return checked


@task(name="extract-features", cache_policy=NO_CACHE)
def featurise(cfg: AnomalyJobConfig, checked: CheckedSensorData) -> AnomalyDataset:
    return build_dataset(checked.records, cfg, cfg.data.normal_labels)


@task(name="add-device-normal", cache_policy=NO_CACHE)
def add_device_normal(
    cfg: AnomalyJobConfig, dataset: AnomalyDataset, device: str, state: Path
) -> AnomalyDataset:
    """The drifted device's recent normal feature rows join the normal data (monitor.retraining);
    each version's own false-alarm rate (its monitoring reference) says which windows are normal."""
    from edge.telemetry import TelemetryStore
    from monitor.retraining import device_normal_rows
    from registry.references import reference_loader

    model, reference = cfg.tracking.model_name, reference_loader(cfg.tracking.tracking_uri)

    def normal_rate(version: str) -> float | None:
        return (reference(model, version) or {}).get("alarm_rate")

    normal = device_normal_rows(TelemetryStore(state / "telemetry.db"), device, model, normal_rate)
    mlflow.set_tags({"retrained_for_device": device})
    mlflow.log_metrics({"device_normal_rows": len(normal.rows), "device_windows_used": normal.windows_used,
                        "device_windows_alarmed": normal.windows_alarmed})  # fmt: skip
    console.print(f"{device}: {len(normal.rows)} normal feature rows from {normal.windows_used} normal windows "
                  f"({normal.windows_alarmed} recent windows alarmed beyond the normal rate and stay out)")  # fmt: skip
    return add_device_rows(dataset, normal.rows, f"telemetry:{device}", cfg)


@task(name="train-on-normal", cache_policy=NO_CACHE)
def train(cfg: AnomalyJobConfig, dataset: AnomalyDataset) -> AnomalyTrainResult:
    return train_anomaly_model(cfg, dataset)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(cfg: AnomalyJobConfig, trained: AnomalyTrainResult, dataset: AnomalyDataset, out_dir: Path):
    report = evaluate_protocol(cfg, trained, dataset)
    plots = protocol_plots(report, dataset, cfg.features, out_dir)
    (out_dir / "protocol.md").write_text(protocol_markdown(report))
    publish.write_json(out_dir / "protocol.json", report.to_dict())
    return report, plots


@task(name="export-onnx", cache_policy=NO_CACHE)
def export(
    cfg: AnomalyJobConfig,
    trained,
    dataset: AnomalyDataset,
    report: ProtocolReport,
    lineage: dict,
    out_dir: Path,
):
    exported = export_anomaly_model(cfg, trained, dataset, report.flat(), lineage, cfg.export, out_dir)
    console.print(
        f"ONNX: {exported.path} ({exported.path.stat().st_size / 1e3:.0f} kB), parity max |diff| {exported.parity_max_abs:.2e}"
    )
    return exported


def _metric_name(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", text).strip("_")


@task(name="log-and-register", cache_policy=NO_CACHE)
def log_and_register(cfg: AnomalyJobConfig, checked: CheckedSensorData, trained: AnomalyTrainResult,
                     report: ProtocolReport, plots: dict, exported: AnomalyExport, eval_dir: Path, lineage: dict):  # fmt: skip
    mlflow.log_metrics(report.flat() | {f"data_{k}": float(v) for k, v in checked.counts().items()})
    mlflow.log_metrics({"export_parity_max_abs": exported.parity_max_abs, "fit_seconds": trained.fit_seconds,
                        "threshold_margin_mads": trained.threshold.margin_mads, "min_peak_ratio": trained.min_peak_ratio})  # fmt: skip
    for r in report.records:
        key = _metric_name(f"{r.group}_{r.load}")
        mlflow.log_metrics({f"auroc_{key}": r.auroc, f"detection_{key}": r.detection_rate})
    publish.log_files(
        plots | {"md": eval_dir / "protocol.md", "json": eval_dir / "protocol.json"}, "evaluation"
    )
    publish.log_files(checked.files, "data_checks")
    page = write_checks_html("Data checks", checked.counts(), checked.findings, eval_dir / "report.html")
    publish.log_files({"report": page}, "data_checks")  # renders in the MLflow UI (Data Docs do not)
    publish.log_directory(checked.docs_dir, "data_checks/data_docs")
    model_uri = log_anomaly_model(exported)
    tags = {k: str(v) for k, v in lineage.items() if k != "run_id"} | {
        "model": str(cfg.model.name), "false_alarm_rate": f"{report.false_alarm_rate:.4f}",
        "auroc_all_faults": f"{report.auroc_all_faults:.4f}", "flow": FLOW_NAME,
    }  # fmt: skip
    return publish.register(model_uri, cfg.tracking.model_name, tags)


@task(name="monitoring-reference", cache_policy=NO_CACHE)
def monitoring_reference(
    version, exported: AnomalyExport, dataset: AnomalyDataset, trained: AnomalyTrainResult
) -> dict:
    """Normal windows (training and calibration slices, in time order) and the held-out calibration
    windows' scores as the exported file computes them, with the floors."""
    calibration = dataset.features("calibration", True)
    features = np.concatenate([dataset.features("train", True), calibration])
    scores = onnx_scores(exported.path, calibration)
    reference = vibration_reference(features, scores, trained.feature_names, trained.threshold.value)
    log_reference(mlflow.MlflowClient(), version.name, version.version, reference)
    return reference


@task(name="gate-and-promote", cache_policy=NO_CACHE)
def gate_and_promote(cfg: AnomalyJobConfig, version, report: ProtocolReport):
    gate, promoted = release_anomaly(cfg.promotion, version.name, version.version, report.flat(), FLOW_NAME)
    mlflow.log_dict(gate.to_dict(), "promotion/gate_report.json")
    mlflow.set_tag("promoted_to_champion", str(promoted).lower())
    return gate, promoted


@task(name="describe-for-review", cache_policy=NO_CACHE)
def describe_for_review(version, report: ProtocolReport, gate, promoted: bool, checked: CheckedSensorData,
                        lineage: dict) -> None:  # fmt: skip
    """The version's and the run's page in the MLflow UI: figures, gate table, data, lineage."""
    title = f"{version.name} version {version.version}: {'champion' if promoted else 'candidate'}"
    page = anomaly_page(title, report, gate, cpu_facts()["cpu"], checked.counts(), lineage)
    describe(mlflow.MlflowClient(), version.name, version.version, version.run_id, page)


@flow(name=FLOW_NAME, log_prints=True)
def retrain_anomaly_model(data: str, config: str | None = None, overrides: list[str] | None = None,
                          device: str | None = None, state: str = str(DEFAULT_EDGE_STATE)) -> AnomalyRunSummary:  # fmt: skip
    """Check, featurise, train on normal windows, evaluate, export, register and gate an anomaly model.

    With `device` (a drift event's), that device's recent normal telemetry from the edge `state`
    folder joins the normal data, and the new version goes to that device first."""
    cfg: AnomalyJobConfig = load_config(AnomalyJobConfig, Path(config) if config else None, overrides)
    client = configure(cfg.tracking)
    data_path = Path(data)
    fail_abandoned_runs(client, mlflow.get_experiment_by_name(cfg.tracking.experiment).experiment_id)
    with mlflow.start_run(tags=process_tags()) as run:
        work = cfg.work_dir / run.info.run_id
        mlflow.set_tags({"git_commit": git_commit(), "data_source": str(data_path), "flow": FLOW_NAME})
        mlflow.log_params(publish.flatten("", cfg.model_dump(mode="json")))
        mlflow.log_dict(cfg.model_dump(mode="json"), "config/resolved_config.json")
        checked = check_data(cfg, data_path, work / "checks")
        lineage = {"run_id": run.info.run_id, "data_fingerprint": checked.fingerprint,
                   "dvc_data_version": dvc_data_version(data_path), "git_commit": git_commit(), "feature_set": FEATURE_SET}  # fmt: skip
        mlflow.set_tags({k: v for k, v in lineage.items() if k != "run_id"})
        dataset = featurise(cfg, checked)
        if device:
            dataset = add_device_normal(cfg, dataset, device, Path(state))
        trained = train(cfg, dataset)
        report, plots = evaluate(cfg, trained, dataset, work / "evaluate")
        exported = export(cfg, trained, dataset, report, lineage, work / "export")
        version = log_and_register(cfg, checked, trained, report, plots, exported, work / "evaluate", lineage)
        monitoring_reference(version, exported, dataset, trained)
        if device:
            canary_first(version, device, Path(state))
        gate, promoted = gate_and_promote(cfg, version, report)
        describe_for_review(version, report, gate, promoted, checked, lineage)
    summary = AnomalyRunSummary(
        run.info.run_id, version.name, version.version, str(cfg.model.name), report.false_alarm_rate,
        report.auroc_all_faults, report.threshold, gate.passed, promoted, tuple(gate.failures()), str(exported.path),
    )  # fmt: skip
    console.print(
        f"\n[bold]Done.[/bold] {cfg.model.name}: false-alarm rate on held-out normal {summary.false_alarm_rate:.4f}, "
        f"AUROC over all fault windows {summary.auroc_all_faults:.4f}, threshold {summary.threshold:.4g}\n"
        f"Registered model: {summary.model_name} version {summary.model_version}, run {summary.run_id}"
        + (" - promoted to champion" if promoted else " - stays candidate: " + ("; ".join(gate.failures()) or "auto_promote is off"))
        + f"\nScore a file: shopfloor score anomaly --model {summary.model_name}@{'champion' if promoted else 'candidate'} FILE"
        + f"\nLook at it: shopfloor ui   (MLflow on {cfg.tracking.tracking_uri})"
    )  # fmt: skip
    return summary
