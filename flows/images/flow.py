"""Prefect flow `train-defect-classifier`: checks -> split -> fine-tune + probe -> evaluate -> export -> register -> gate.

Each task is a thin wrapper around one stage function; the flow owns the MLflow run so that
every task's output lands in the same place. A failing task fails the run (MLflow status
FAILED) and registers nothing; `resume` reopens a killed run and continues from its last epoch.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from core.config import load_config
from core.errors import ConfigError
from core.onnx_runtime import cpu_facts
from core.settings import DEFAULT_EDGE_STATE
from data_checks.images.gate import CheckedDataset
from data_checks.versioning import dvc_data_version, fetch_data_version
from export.images.stage import export_edge_models
from flows.images.checks import check_data, log_checks
from flows.images.config import DefectJobConfig
from flows.images.preflight import preflight, settle_colour, settle_good_class
from flows.report import console
from flows.rollout import canary_first
from monitor.reference import image_reference, score_images
from registry import publish
from registry.images import log_frozen_set, log_onnx_models, log_pytorch_model, release
from registry.lines import LINE_TAG
from registry.references import log_reference
from registry.review import defect_page, describe
from registry.tracking import configure, fail_abandoned_runs, git_commit, process_tags, tracked_run
from training.images.evaluate import evaluate_checkpoint
from training.images.label_review import review_labels
from training.images.prepare import assign_split
from training.images.probe import FINE_TUNE, PROBE, Candidate, choose_candidate
from training.images.torchrun import train_on_processes
from training.images.train import train_classifier

FLOW_NAME = "train-defect-classifier"


@dataclass(frozen=True)
class DefectRunSummary:
    run_id: str
    model_name: str
    model_version: str
    test_macro_f1: float
    test_balanced_accuracy: float
    defect_recall: float | None
    false_reject_rate: float | None
    quarantined: int
    tracking_uri: str
    gate_passed: bool
    promoted: bool
    gate_failures: tuple[str, ...]


@task(name="review-labels", cache_policy=NO_CACHE)
def review(cfg: DefectJobConfig, checked: CheckedDataset, out_dir: Path):
    return review_labels(
        checked.manifest, checked.classes, out_dir, cfg.checks.cache_dir, cfg.review.html_items
    )


@task(name="split-by-part", cache_policy=NO_CACHE)
def split(cfg: DefectJobConfig, checked: CheckedDataset, dataset_name: str):
    return assign_split(checked.manifest, cfg.split, dataset_name)


@task(name="fine-tune", cache_policy=NO_CACHE)
def fine_tune(cfg: DefectJobConfig, manifest, classes: list[str], out_dir: Path, resume: bool):
    def log_epoch(row: dict) -> None:
        mlflow.log_metrics({k: v for k, v in row.items() if isinstance(v, float)}, step=row["epoch"])

    if cfg.fit.processes > 1:  # torchrun's rank 0 logs the epochs to this run itself
        run = (mlflow.get_tracking_uri(), mlflow.active_run().info.run_id)
        return train_on_processes(
            manifest, classes, cfg.model, cfg.augment, cfg.fit, out_dir, cfg.checks.cache_dir, resume, run
        )
    return train_classifier(
        manifest, classes, cfg.model, cfg.augment, cfg.fit, out_dir, cfg.checks.cache_dir, resume, log_epoch
    )


@task(name="linear-probe-baseline", cache_policy=NO_CACHE)
def probe_baseline(cfg: DefectJobConfig, trained, manifest, classes: list[str], out_dir: Path) -> Candidate:
    """The frozen-backbone probe beside the fine-tune; the one better on validation goes on. The fine-tune's
    epochs (with any collapse restart, in words) are kept as the run's training/history.json."""
    mlflow.log_dict({"epochs": trained.fit.history}, "training/history.json")
    candidate = choose_candidate(
        manifest, classes, cfg.model, cfg.fit, trained.fit, out_dir, cfg.checks.cache_dir
    )
    mlflow.log_metrics({"val_macro_f1_finetune": candidate.val_macro_f1[FINE_TUNE],
                        "val_macro_f1_probe": candidate.val_macro_f1[PROBE]})  # fmt: skip
    mlflow.set_tag("candidate", candidate.name)
    console.print(f"Candidate: {candidate.words()}", markup=False)
    return candidate


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(cfg: DefectJobConfig, checkpoint: Path, manifest, classes: list[str], out_dir: Path):
    return evaluate_checkpoint(checkpoint, manifest, classes, cfg.eval, out_dir, cfg.checks.cache_dir)


@task(name="export-onnx", cache_policy=NO_CACHE)
def export(
    cfg: DefectJobConfig, model_path: Path, manifest, classes: list[str], out_dir: Path, lineage: dict
):
    report = export_edge_models(
        model_path, manifest, classes, cfg.export, out_dir, cfg.checks.cache_dir, lineage
    )
    console.print(
        f"ONNX: int8 {report.int8.size_bytes / 1e6:.1f} MB vs fp32 {report.fp32.size_bytes / 1e6:.1f} MB, "
        f"top-1 agreement {report.top1_agreement:.3f}, p95 latency int8 {report.int8.latency_ms_p95:.1f} ms "
        f"vs fp32 {report.fp32.latency_ms_p95:.1f} ms"
    )
    return report


@task(name="log-and-register", cache_policy=NO_CACHE)
def log_and_register(
    cfg: DefectJobConfig,
    checked: CheckedDataset,
    label_review,
    trained,
    evaluation,
    exported,
    data_version: str,
):
    result, model_path = evaluation
    mlflow.log_metrics(result.test.flat("test_") | result.val.flat("eval_val_"))
    mlflow.log_metrics(exported.flat())
    publish.log_files(result.plots, "evaluation")
    publish.log_files({"preview": trained.augmentation_preview}, "augmentation")
    log_checks(checked)
    if label_review is not None:
        publish.log_files({"csv": label_review.csv, "html": label_review.html}, "data_checks/label_review")
    mlflow.log_dict(result.test.to_dict(), "evaluation/test_metrics.json")
    log_pytorch_model(model_path, {"data_fingerprint": checked.fingerprint, "dvc_data_version": data_version})
    model_uri = log_onnx_models(exported)  # the int8 file devices run is what gets registered
    tags = {
        "data_fingerprint": checked.fingerprint,
        "dvc_data_version": data_version,
        "git_commit": git_commit(),
        "test_macro_f1": f"{result.test.macro_f1:.4f}",
        "int8_macro_f1": f"{exported.int8.macro_f1:.4f}",
        "flow": FLOW_NAME,
        LINE_TAG: cfg.tracking.line,
    }
    mlflow.set_tag(LINE_TAG, cfg.tracking.line)
    return publish.register(model_uri, cfg.tracking.model_name, tags)


@task(name="monitoring-reference", cache_policy=NO_CACHE)
def monitoring_reference(version, exported, manifest, classes: list[str]) -> dict:
    """What the shipped int8 file sees on the validation tiles, and the drift tests' floors."""
    held_out = manifest[manifest["split"] == "val"]
    labels = np.array([classes.index(label) for label in held_out["label"]])
    items = score_images(exported.int8_path, held_out["path"].tolist(), labels, held_out["group"].to_numpy())
    reference = image_reference(items)
    log_reference(mlflow.MlflowClient(), version.name, version.version, reference)
    return reference


@task(name="gate-and-promote", cache_policy=NO_CACHE)
def gate_and_promote(cfg: DefectJobConfig, version, exported, manifest):
    frozen = log_frozen_set(manifest)
    report, promoted = release(
        cfg.promotion, version.name, version.version, exported.flat(), frozen, FLOW_NAME
    )
    mlflow.log_dict(report.to_dict(), "promotion/gate_report.json")
    mlflow.set_tag("promoted_to_champion", str(promoted).lower())
    return report, promoted


@task(name="describe-for-review", cache_policy=NO_CACHE)
def describe_for_review(version, evaluation, gate, promoted: bool, exported, checked: CheckedDataset,
                        label_review, lineage: dict) -> None:  # fmt: skip
    """The version's and the run's page in the MLflow UI: figures, gate table, edge file, data, lineage."""
    title = f"{version.name} version {version.version}: {'champion' if promoted else 'candidate'}"
    page = defect_page(title, evaluation[0].test, gate, exported.flat(), cpu_facts()["cpu"], checked.counts(),
                       label_review.issues if label_review is not None else None, lineage,
                       json.loads(exported.card_path.read_text()))  # fmt: skip
    describe(mlflow.MlflowClient(), version.name, version.version, version.run_id, page)


def _start_run(resume: str | None, client, experiment_id: str) -> mlflow.ActiveRun:
    """A new run, or the one to resume; runs left RUNNING by a dead process are marked FAILED first."""
    if resume is None:
        fail_abandoned_runs(client, experiment_id)
        return mlflow.start_run(tags=process_tags())
    if resume == "last":
        runs = mlflow.search_runs(
            filter_string="attributes.status != 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
            output_format="list",
        )
        if not runs:
            raise ConfigError("--resume last: no unfinished run in this experiment to resume")
        resume = runs[0].info.run_id
    try:
        client.get_run(resume)
    except Exception as err:  # MlflowException for unknown ids
        raise ConfigError(f"--resume {resume}: no such MLflow run in this tracking store") from err
    fail_abandoned_runs(client, experiment_id, keep=resume)
    run = mlflow.start_run(run_id=resume)
    mlflow.set_tags(process_tags())  # the resuming process owns the run now
    return run


def log_dataset(manifest, source: str, name: str, digest: str) -> None:
    """The manifest as the run's MLflow dataset: shown on the run page, with the fingerprint as digest.
    MLflow's hints are not for the user ("source can be interpreted in multiple ways": both are local
    paths; "integer column(s)": a CSV manifest's row numbers are never missing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(manifest, source=source, name=name, digest=digest)
        mlflow.log_input(dataset, context="training")


def _log_start(cfg: DefectJobConfig, data_path: Path, resumed: bool) -> None:
    mlflow.set_tags({"git_commit": git_commit(), "data_source": str(data_path), "flow": FLOW_NAME})
    if not resumed:
        mlflow.log_params(publish.flatten("", cfg.model_dump(mode="json")))
        mlflow.log_dict(cfg.model_dump(mode="json"), "config/resolved_config.json")


def _log_data(checked: CheckedDataset, data_path: Path) -> str:
    """Tag the run with the data's fingerprint and DVC version, and show the manifest as its dataset."""
    data_version = dvc_data_version(data_path)
    mlflow.set_tags({"data_fingerprint": checked.fingerprint, "dvc_data_version": data_version})
    log_dataset(checked.manifest, str(data_path.resolve()), data_path.name, checked.fingerprint[:32])
    return data_version


def _summary_text(summary: DefectRunSummary, gate_failures: list[str], int8_path: Path) -> str:
    point = summary.defect_recall is not None
    return (
        f"\n[bold]Done.[/bold] Test macro-F1 on held-out parts: {summary.test_macro_f1:.3f} "
        f"(balanced accuracy {summary.test_balanced_accuracy:.3f})"
        + (f"; defect recall {summary.defect_recall:.3f} at false-reject rate {summary.false_reject_rate:.3f}" if point else "")
        + f"\nRegistered model: {summary.model_name} version {summary.model_version}, run {summary.run_id}"
        + (" - promoted to champion" if summary.promoted else " - stays candidate: " + ("; ".join(gate_failures) or "auto_promote is off"))
        + f"\nEdge model (int8 ONNX, what devices pull): {int8_path}"
        + f"\nLook at it: shopfloor ui   (MLflow on {summary.tracking_uri})"
    )  # fmt: skip


@flow(name=FLOW_NAME, log_prints=True)
def train_defect_classifier(data: str | None = None, config: str | None = None, overrides: list[str] | None = None,
                            resume: str | None = None, device: str | None = None,
                            state: str = str(DEFAULT_EDGE_STATE), data_version: str | None = None) -> DefectRunSummary:  # fmt: skip
    """Train, evaluate and register a defect classifier on the images under `data`.

    With `data_version` (a DVC hash, `<md5>.dir`), the files of that version are pulled from the DVC
    remote first and `data` only names their folder. With `device` (a drift event's), the new version
    goes to that device first (edge `state`)."""
    cfg: DefectJobConfig = load_config(DefectJobConfig, Path(config) if config else None, overrides)
    if data is None and data_version is None:
        raise ConfigError(
            "train-defect-classifier needs `data` (a folder or CSV manifest) or `data_version` (a DVC hash)"
        )
    data_path = Path(data or "data")
    if data_version is not None:  # before any MLflow call: an unknown version starts no run
        data_path = fetch_data_version(data_version, data_path.name, cfg.checks.cache_dir)
    client = configure(cfg.tracking)
    cfg = preflight(cfg, data_path, "claim", client)  # the CLI checked; a run from the Prefect UI did not
    experiment_id = mlflow.get_experiment_by_name(cfg.tracking.experiment).experiment_id
    with tracked_run(lambda: _start_run(resume, client, experiment_id)) as run:
        work = cfg.work_dir / run.info.run_id
        _log_start(cfg, data_path, resume is not None)
        checked = check_data(cfg.checks, data_path, work / "checks")
        cfg = settle_colour(settle_good_class(cfg, checked.classes), checked.manifest)
        data_version = _log_data(checked, data_path)
        label_review = review(cfg, checked, work / "review") if cfg.review.enabled else None
        manifest = split(cfg, checked, cfg.tracking.line)  # the frozen test set is the line's
        manifest.to_csv(work / "checks" / "manifest_split.csv", index=False)
        trained = fine_tune(cfg, manifest, checked.classes, work / "train", resume is not None)
        candidate = probe_baseline(cfg, trained, manifest, checked.classes, work / "train")
        evaluation = evaluate(cfg, candidate.checkpoint, manifest, checked.classes, work / "evaluate")
        result, model_path = evaluation
        lineage = {"product_line": cfg.tracking.line, "run_id": run.info.run_id, "data_fingerprint": checked.fingerprint,
                   "dvc_data_version": data_version, "git_commit": git_commit(), "candidate": candidate.words()}  # fmt: skip
        exported = export(cfg, model_path, manifest, checked.classes, work / "export", lineage)
        version = log_and_register(cfg, checked, label_review, trained, evaluation, exported, data_version)
        monitoring_reference(version, exported, manifest, checked.classes)
        if device:
            canary_first(version, device, Path(state))
        gate, promoted = gate_and_promote(cfg, version, exported, manifest)
        describe_for_review(version, evaluation, gate, promoted, exported, checked, label_review, lineage)
    point = result.test.operating_point
    summary = DefectRunSummary(
        run.info.run_id, version.name, version.version, result.test.macro_f1, result.test.balanced_accuracy,
        point.defect_recall if point else None, point.false_reject_rate if point else None,
        len(checked.quarantined), cfg.tracking.tracking_uri, gate_passed=gate.passed, promoted=promoted,
        gate_failures=tuple(gate.failures()),
    )  # fmt: skip
    console.print(_summary_text(summary, gate.failures(), exported.int8_path))
    return summary
