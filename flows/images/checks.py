"""The image data gate as a Prefect task, shared by both image flows (defect classifier, image anomaly)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_checks.images.config import ChecksConfig
from data_checks.images.gate import CheckedDataset, check_image_dataset
from flows.report import console, print_findings, quarantine_summary


@task(name="check-data", cache_policy=NO_CACHE)
def check_data(cfg: ChecksConfig, data: Path, out_dir: Path) -> CheckedDataset:
    checked = check_image_dataset(cfg, data, out_dir)
    print_findings(checked.findings)
    console.print(quarantine_summary(checked.quarantined, cfg.quarantine_dir))
    return checked
