"""The gate every image data set passes before training: load, measure, validate, quarantine.

`check_image_dataset` is the stage function; the Prefect task, DVC stage and CLI wrap it. Items
that break an `error` rule are quarantined with their reason (excluded from training, a copy kept
in the store; the data folder is left as it is unless `quarantine_mode` is "move") and the rest
goes on; the data set as a whole fails (DataCheckFailed) when a data-set level `error` rule
breaks or when more than `max_error_fraction` of the items break one (then nothing is excluded:
so many failures mean a wrong folder or a broken camera, not a few bad files).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data_checks.findings import Finding, Severity, findings_frame, stop_message
from data_checks.images.annotators import AgreementReport, annotator_agreement
from data_checks.images.config import ChecksConfig  # noqa: F401  (re-exported: the stage and its settings)
from data_checks.images.duplicates import (
    DuplicateReport,
    copy_groups,
    declared_groups_that_look_alike,
    find_duplicates,
    merge_groups,
)
from data_checks.images.manifest import load_dataset
from data_checks.images.properties import compute_image_properties
from data_checks.images.suite import validate_images
from data_checks.quarantine import QuarantinedItem, quarantine


@dataclass
class CheckedDataset:
    """The clean manifest (path, label, group, mask_path, lighting, md5) and what the checks found."""

    manifest: pd.DataFrame
    classes: list[str]
    findings: list[Finding]
    quarantined: list[QuarantinedItem]
    properties: pd.DataFrame
    duplicates: DuplicateReport
    fingerprint: str
    source: Path
    agreement: AgreementReport | None = None
    docs_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "images_clean": len(self.manifest),
            "images_quarantined": len(self.quarantined),
            "findings_error": sum(f.severity == Severity.ERROR for f in self.findings),
            "findings_warn": sum(f.severity == Severity.WARN for f in self.findings),
            "groups": int(self.manifest["group"].nunique()),
        }


def manifest_fingerprint(manifest: pd.DataFrame) -> str:
    """sha256 over (relative path, label, group, file md5): changes when any image or label does."""
    rows = sorted(
        f"{r},{label},{group},{md5}"
        for r, label, group, md5 in manifest[["relpath", "label", "group", "md5"]].itertuples(index=False)
    )
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _clean_manifest(manifest: pd.DataFrame, properties: pd.DataFrame, keep: np.ndarray,
                    duplicates: DuplicateReport, declared: bool, out_dir: Path) -> pd.DataFrame:  # fmt: skip
    """The items that passed, with their content hash and their part groups merged with the ones
    found from pixels (named after a member's own group, so they stay readable). Groups the user
    declared merge with copies of one photo only, not with look-alikes."""
    clean = manifest[keep].copy()
    clean["md5"] = properties["md5"].to_numpy()[keep]
    clean["frame_group"] = clean["group"]
    pixels = copy_groups(duplicates) if declared else duplicates.part_group
    merged = merge_groups(clean["group"].to_numpy(), pixels[keep])
    clean["group"] = clean.groupby(merged)["group"].transform("min").to_numpy()
    clean = clean.reset_index(drop=True)
    clean.to_csv(out_dir / "manifest.csv", index=False)
    return clean


def check_image_dataset(cfg: ChecksConfig, source: Path, out_dir: Path) -> CheckedDataset:
    """Run every image check on `source` and quarantine failing items; see the module docstring."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scan = load_dataset(source, cfg.group_by, cfg.frame_gap)
    manifest, findings = scan.manifest, list(scan.findings)
    agreement = None
    if "annotator" in manifest.columns:
        agreement, manifest = annotator_agreement(manifest)
        findings += agreement.findings

    properties = compute_image_properties(manifest["path"].tolist(), cfg.cache_dir, cfg.fan_out)
    classes = list(cfg.classes) if cfg.classes else sorted(manifest["label"].unique())
    docs_dir = out_dir / "data_docs"
    findings += validate_images(properties, manifest["label"], cfg.rules, classes, docs_dir)
    table = properties.assign(label=manifest["label"].to_numpy())
    duplicates = find_duplicates(table, cfg.duplicates)
    findings += duplicates.findings
    if scan.declared_groups and (
        alike := declared_groups_that_look_alike(manifest["group"].to_numpy(), duplicates)
    ):
        findings.append(alike)

    bad_items = [f for f in findings if f.severity == Severity.ERROR and f.path in set(manifest["path"])]
    bad_paths = {f.path for f in bad_items}
    data_set_errors = [f for f in findings if f.severity == Severity.ERROR and f.path is None]
    findings_frame(findings).to_csv(out_dir / "findings.csv", index=False)
    if len(bad_paths) > cfg.max_error_fraction * len(manifest):
        raise stop_message(
            f"{len(bad_paths)} of {len(manifest)} images break error rules, more than "
            f"checks.max_error_fraction={cfg.max_error_fraction:.0%}, so nothing was excluded or moved. Is this the "
            f"right folder? If it is, raise the limit (--set checks.max_error_fraction={min(1.0, 2 * len(bad_paths) / len(manifest)):.2f}) "
            f"or fix the files listed in {out_dir / 'findings.csv'}",
            bad_items,
        )
    if data_set_errors and cfg.stop_on_error:
        raise stop_message("the data set breaks error rules", data_set_errors)

    companions = dict(zip(manifest["path"], manifest["mask_path"], strict=True))
    moved = quarantine(bad_items, scan.root, cfg.quarantine_dir, companions, cfg.quarantine_mode)
    keep = ~manifest["path"].isin(bad_paths).to_numpy()
    clean = _clean_manifest(manifest, properties, keep, duplicates, scan.declared_groups, out_dir)
    return CheckedDataset(
        manifest=clean,
        classes=classes,
        findings=findings,
        quarantined=moved,
        properties=properties[keep].reset_index(drop=True),
        duplicates=duplicates,
        fingerprint=manifest_fingerprint(clean),
        source=Path(source),
        agreement=agreement,
        docs_dir=docs_dir if docs_dir.exists() else None,
        files={"manifest": out_dir / "manifest.csv", "findings": out_dir / "findings.csv"},
    )
