"""The image data gate as a Prefect task, and what it logs to the run, shared by both image flows (defect
classifier, image anomaly)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_checks.images.config import ChecksConfig
from data_checks.images.gate import CheckedDataset, check_image_dataset
from data_checks.report import write_checks_html
from flows.report import console, print_findings, quarantine_summary
from registry import publish


@task(name="check-data", cache_policy=NO_CACHE)
def check_data(cfg: ChecksConfig, data: Path, out_dir: Path) -> CheckedDataset:
    checked = check_image_dataset(cfg, data, out_dir)
    print_findings(checked.findings)
    console.print(quarantine_summary(checked.quarantined, cfg.quarantine_dir))
    return checked


def log_checks(checked: CheckedDataset) -> None:
    """The gate's counts as `data_*` metrics, its files, its page (renders in the MLflow UI; Data Docs do
    not), the Data Docs and the quarantined items, under `data_checks/` of the open run."""
    import mlflow

    mlflow.log_metrics({f"data_{k}": float(v) for k, v in checked.counts().items()})
    publish.log_files(checked.files, "data_checks")
    page = write_checks_html(
        "Data checks", checked.counts(), checked.findings, checked.files["findings"].parent / "report.html"
    )
    publish.log_files({"report": page}, "data_checks")
    publish.log_directory(checked.docs_dir, "data_checks/data_docs")
    if checked.quarantined:
        mlflow.log_dict(
            {"quarantined": [item.__dict__ for item in checked.quarantined]}, "data_checks/quarantined.json"
        )
