"""Prefect flow `train-image-anomaly`: checks -> split -> memory bank from good parts -> threshold on
held-out good parts -> evaluate (anomaly maps) -> ONNX -> register -> monitoring reference -> gate -> describe.

For a line with no labelled defects yet, or one that meets defects nobody has seen: the model learns
what good parts look like (training.images.patchcore). Same checks, same grouped split and frozen test
parts as the line's classifier, so their figures compare; where the line has a classifier champion, it
is scored on the same test parts and shown beside. Registered as the line's own `<line>-anomaly`, gated
on the exported file's figures, pulled by devices and watched for drift (scores and image statistics)
like every other model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from core.config import load_config
from core.errors import ConfigError, DataError
from core.onnx_runtime import cpu_facts
from core.settings import DEFAULT_EDGE_STATE
from data_checks.images.gate import CheckedDataset
from data_checks.versioning import dvc_data_version, fetch_data_version
from export.images.patchcore import ImageAnomalyExport, export_image_anomaly
from flows.images.checks import check_data, log_checks
from flows.images.config import ImageAnomalyJobConfig
from flows.images.preflight import preflight, settle_colour, settle_good_class
from flows.report import console
from flows.rollout import canary_first
from monitor.reference import image_anomaly_reference, score_anomaly_images
from registry import publish
from registry.image_anomaly import (
    line_classifier_beside,
    log_image_anomaly_model,
    mark_kind,
    release_image_anomaly,
)
from registry.images import log_frozen_set
from registry.lines import LINE_TAG
from registry.references import log_reference
from registry.review import describe, image_anomaly_page
from registry.tracking import configure, fail_abandoned_runs, git_commit, process_tags, tracked_run
from training.images.anomaly import (
    AnomalyEvaluation,
    AnomalyImages,
    FittedAnomalyModel,
    anomaly_images,
    evaluate_image_anomaly,
    fit_image_anomaly,
)
from training.images.anomaly_plots import anomaly_map_pngs, score_histogram_png
from training.images.prepare import assign_split

FLOW_NAME = "train-image-anomaly"


@dataclass(frozen=True)
class ImageAnomalyRunSummary:
    run_id: str
    model_name: str
    model_version: str
    threshold: float
    test_false_reject_rate: float
    test_defect_recall: float | None
    test_auroc: float | None
    gate_passed: bool
    promoted: bool
    gate_failures: tuple[str, ...]
    onnx_path: str


@task(name="split-by-part", cache_policy=NO_CACHE)
def split(cfg: ImageAnomalyJobConfig, checked: CheckedDataset, good: str, out_dir: Path) -> AnomalyImages:
    """The line's grouped split (its frozen test parts, logged: `registry set-threshold` re-measures on
    them), and every image decoded once."""
    manifest = assign_split(checked.manifest, cfg.split, cfg.tracking.line)
    manifest.to_csv(out_dir / "manifest_split.csv", index=False)
    log_frozen_set(manifest)
    return anomaly_images(manifest, good, cfg.model.image_size, cfg.checks.cache_dir, bool(cfg.model.colour))


@task(name="fit-memory-bank", cache_policy=NO_CACHE)
def fit_bank(cfg: ImageAnomalyJobConfig, data: AnomalyImages) -> FittedAnomalyModel:
    fitted = fit_image_anomaly(cfg.model, data)
    console.print(f"Memory bank: {fitted.bank_size} patches from {fitted.train_good} good training images "
                  f"in {fitted.fit_seconds:.0f} s; threshold {fitted.threshold:.4g}")  # fmt: skip
    return fitted


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(cfg: ImageAnomalyJobConfig, fitted: FittedAnomalyModel, data: AnomalyImages, out_dir: Path):
    evaluation = evaluate_image_anomaly(fitted, data)
    plots = {"scores": score_histogram_png(evaluation, data, fitted.threshold, out_dir / "test_scores.png")}
    maps = anomaly_map_pngs(fitted.scorer, evaluation, data, fitted.threshold, out_dir / "anomaly_maps",
                            cfg.eval.map_examples) if cfg.eval.map_examples else {}  # fmt: skip
    return evaluation, plots, maps


@task(name="export-onnx", cache_policy=NO_CACHE)
def export(cfg: ImageAnomalyJobConfig, fitted: FittedAnomalyModel, data: AnomalyImages, good: str,
           evaluation: AnomalyEvaluation, lineage: dict, out_dir: Path) -> ImageAnomalyExport:  # fmt: skip
    metrics = evaluation.flat() | {"fit_seconds": fitted.fit_seconds}
    exported = export_image_anomaly(cfg.model, fitted, data, good, metrics, lineage, out_dir)
    console.print(f"ONNX: {exported.path} ({exported.path.stat().st_size / 1e6:.1f} MB), "
                  f"parity max gap {exported.parity_max_abs:.2e}")  # fmt: skip
    return exported


@task(name="classifier-beside", cache_policy=NO_CACHE)
def classifier_beside(cfg: ImageAnomalyJobConfig, data: AnomalyImages, checked: CheckedDataset) -> str:
    """The line's classifier champion on the same test parts (none: an empty answer)."""
    words, metrics = line_classifier_beside(mlflow.MlflowClient(), cfg.tracking.line, data, checked.classes)
    if metrics:
        mlflow.log_metrics(metrics)
        console.print(f"Beside it: {words}")
    return words


@task(name="log-and-register", cache_policy=NO_CACHE)
def log_and_register(cfg: ImageAnomalyJobConfig, checked: CheckedDataset, evaluation: AnomalyEvaluation,
                     plots: dict, maps: dict, exported: ImageAnomalyExport, lineage: dict):  # fmt: skip
    mlflow.log_metrics(evaluation.flat() | exported.flat())
    publish.log_files(plots, "evaluation")
    publish.log_files(maps, "evaluation/anomaly_maps")
    log_checks(checked)
    model_uri = log_image_anomaly_model(exported)
    tags = {k: str(v) for k, v in lineage.items() if k != "run_id"} | {"flow": FLOW_NAME}
    version = publish.register(model_uri, cfg.tracking.model_name, tags)
    mark_kind(mlflow.MlflowClient(), cfg.tracking.model_name)
    return version


@task(name="monitoring-reference", cache_policy=NO_CACHE)
def monitoring_reference(version, exported: ImageAnomalyExport, data: AnomalyImages) -> dict:
    """What the shipped file sees on the validation parts (scores, image statistics, the floors of the
    drift tests), as a device computes it: `monitor` judges this version's windows against it."""
    rows = data.part("val")
    scores, stats = score_anomaly_images(exported.path, [data.paths[i] for i in rows])
    reference = image_anomaly_reference(
        scores, stats, data.groups[rows], exported.card["decision"]["threshold"]
    )
    log_reference(mlflow.MlflowClient(), version.name, version.version, reference)
    return reference


@task(name="gate-and-promote", cache_policy=NO_CACHE)
def gate_and_promote(cfg: ImageAnomalyJobConfig, version, exported: ImageAnomalyExport):
    gate, promoted = release_image_anomaly(
        cfg.promotion, version.name, version.version, exported.card, FLOW_NAME
    )
    mlflow.log_dict(gate.to_dict(), "promotion/gate_report.json")
    mlflow.set_tag("promoted_to_champion", str(promoted).lower())
    return gate, promoted


@task(name="describe-for-review", cache_policy=NO_CACHE)
def describe_for_review(version, exported: ImageAnomalyExport, gate, promoted: bool, checked: CheckedDataset,
                        lineage: dict, beside: str) -> None:  # fmt: skip
    title = f"{version.name} version {version.version}: {'champion' if promoted else 'candidate'}"
    page = image_anomaly_page(
        title, exported.card, gate, cpu_facts()["cpu"], checked.counts(), lineage, beside
    )
    describe(mlflow.MlflowClient(), version.name, version.version, version.run_id, page)


def _good_class(cfg: ImageAnomalyJobConfig, classes: list[str]) -> ImageAnomalyJobConfig:
    cfg = settle_good_class(cfg, classes)
    if cfg.eval.ok_class is None:
        raise DataError(
            f"no good class among {classes}: an anomaly model learns good parts; name it with --good CLASS"
        )
    return cfg


def _summary(run_id: str, version, fitted: FittedAnomalyModel, exported: ImageAnomalyExport, gate,
             promoted: bool) -> ImageAnomalyRunSummary:  # fmt: skip
    m = exported.card["metrics"]
    return ImageAnomalyRunSummary(
        run_id, version.name, version.version, fitted.threshold, m.get("onnx_test_false_reject_rate", float("nan")),
        m.get("onnx_test_defect_recall"), m.get("onnx_test_auroc"), gate.passed, promoted, tuple(gate.failures()),
        str(exported.path),
    )  # fmt: skip


def _summary_text(summary: ImageAnomalyRunSummary, tracking_uri: str) -> str:
    caught = (f"caught {summary.test_defect_recall:.1%} of defect test parts (AUROC {summary.test_auroc:.3f}), "
              if summary.test_defect_recall is not None else "no labelled defect to measure recall on, ")  # fmt: skip
    return (
        f"\n[bold]Done.[/bold] On held-out test parts the file {caught}"
        f"rejected {summary.test_false_reject_rate:.1%} of good ones (threshold {summary.threshold:.4g})"
        f"\nRegistered model: {summary.model_name} version {summary.model_version}, run {summary.run_id}"
        + (" - promoted to champion" if summary.promoted else " - stays candidate: " + ("; ".join(summary.gate_failures) or "auto_promote is off"))
        + f"\nEdge model (ONNX: score and anomaly map): {summary.onnx_path}"
        + f"\nLook at it: shopfloor ui   (MLflow on {tracking_uri})"
    )  # fmt: skip


@flow(name=FLOW_NAME, log_prints=True)
def train_image_anomaly(data: str | None = "data/magnetic_tiles", config: str | None = None,
                        overrides: list[str] | None = None, device: str | None = None,
                        state: str = str(DEFAULT_EDGE_STATE), data_version: str | None = None) -> ImageAnomalyRunSummary:  # fmt: skip
    """Check the images, fit an anomaly model on the good parts, set its threshold, evaluate, export,
    register and gate it as the line's `<line>-anomaly` model.

    As the classifier's flow: with `data_version` (a DVC hash) the files are pulled from the DVC remote
    first and `data` only names their folder; with `device` (a drift event's), the new version goes to
    that device first (edge `state`)."""
    cfg: ImageAnomalyJobConfig = load_config(
        ImageAnomalyJobConfig, Path(config) if config else None, overrides
    )
    if data is None and data_version is None:
        raise ConfigError(
            f"{FLOW_NAME} needs `data` (a folder or CSV manifest) or `data_version` (a DVC hash)"
        )
    data_path = Path(data or "data")
    if data_version is not None:  # before any MLflow call: an unknown version starts no run
        data_path = fetch_data_version(data_version, data_path.name, cfg.checks.cache_dir)
    client = configure(cfg.tracking)
    cfg = preflight(cfg, data_path, "claim", client)
    experiment_id = mlflow.get_experiment_by_name(cfg.tracking.experiment).experiment_id
    fail_abandoned_runs(client, experiment_id)
    with tracked_run(lambda: mlflow.start_run(tags=process_tags())) as run:
        work = cfg.work_dir / run.info.run_id
        mlflow.set_tags({"git_commit": git_commit(), "data_source": str(data_path), "flow": FLOW_NAME,
                         LINE_TAG: cfg.tracking.line})  # fmt: skip
        mlflow.log_params(publish.flatten("", cfg.model_dump(mode="json")))
        mlflow.log_dict(cfg.model_dump(mode="json"), "config/resolved_config.json")
        checked = check_data(cfg.checks, data_path, work / "checks")
        cfg = _good_class(cfg, checked.classes)
        good = cfg.eval.ok_class
        cfg = settle_colour(cfg, checked.manifest)
        lineage = {"product_line": cfg.tracking.line, "run_id": run.info.run_id, "data_fingerprint": checked.fingerprint,
                   "dvc_data_version": dvc_data_version(data_path), "git_commit": git_commit()}  # fmt: skip
        mlflow.set_tags({k: v for k, v in lineage.items() if k != "run_id"})
        images = split(cfg, checked, good, work / "checks")
        fitted = fit_bank(cfg, images)
        evaluation, plots, maps = evaluate(cfg, fitted, images, work / "evaluate")
        exported = export(cfg, fitted, images, good, evaluation, lineage, work / "export")
        beside = classifier_beside(cfg, images, checked)
        version = log_and_register(cfg, checked, evaluation, plots, maps, exported, lineage)
        monitoring_reference(version, exported, images)
        if device:
            canary_first(version, device, Path(state))
        gate, promoted = gate_and_promote(cfg, version, exported)
        describe_for_review(version, exported, gate, promoted, checked, lineage, beside)
    summary = _summary(run.info.run_id, version, fitted, exported, gate, promoted)
    console.print(_summary_text(summary, cfg.tracking.tracking_uri))
    return summary
