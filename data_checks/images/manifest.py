"""Load an image data set into a manifest: one row per image with its label and physical group.

Two layouts are accepted: a class-per-folder tree (the folder under the root is the label, images
may sit in sub-folders such as `MT_Crack/Imgs/`) or a CSV manifest with columns path,label[,group].
A file that cannot be listed or does not exist becomes a `Finding` naming it; the rest loads.

The `group` column names the physical part an image shows. Splits keep a group on one side, since
several photos of one tile under different lamps are not independent examples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import pandas as pd

from core.errors import DataError
from data_checks.findings import Finding, Severity
from inputs.images import IMAGE_SUFFIXES

# Magnetic-tile names: `<exp>_num_<frame>`; exp = lighting session, frame = camera frame counter.
FRAME_NAME = re.compile(r"^(?P<lighting>exp\d+)_num_(?P<frame>\d+)$")
MANIFEST_COLUMNS = ["path", "label", "group", "mask_path", "lighting"]


class GroupBy(StrEnum):
    """How the physical part behind each image is found."""

    AUTO = "auto"  # CSV group column, else frame clusters when every name has a frame, else file
    FRAME_CLUSTERS = "frame_clusters"  # consecutive frame numbers within a class = one part
    FILE = "file"  # every file is its own part (only safe when parts were shot once)
    COLUMN = "column"  # the CSV's group column


@dataclass
class ScanResult:
    """The loaded manifest and what could not be loaded."""

    manifest: pd.DataFrame
    findings: list[Finding] = field(default_factory=list)
    root: Path = Path(".")
    declared_groups: bool = False  # the groups came from the CSV's group column: the user named the parts


def load_dataset(source: Path, group_by: GroupBy = GroupBy.AUTO, frame_gap: int = 100) -> ScanResult:
    """Load a class-per-folder tree or a CSV manifest; groups assigned per `group_by`."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"data source {source} does not exist; pass a folder or a CSV manifest")
    result = _read_csv_manifest(source) if source.is_file() else _scan_folder(source)
    result.manifest, used = _assign_groups(result.manifest, group_by, frame_gap, result.findings)
    result.declared_groups = used == GroupBy.COLUMN
    result.manifest.insert(1, "relpath", [_relative(p, result.root) for p in result.manifest["path"]])
    return result


def _relative(path: str, root: Path) -> str:
    """Path under the data root, '/'-separated: stable across machines and clones."""
    resolved = Path(path).resolve()
    return (
        resolved.relative_to(root.resolve()).as_posix()
        if resolved.is_relative_to(root.resolve())
        else resolved.as_posix()
    )


def _scan_folder(root: Path) -> ScanResult:
    findings: list[Finding] = []
    rows = []
    try:
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as err:
        raise DataError(f"cannot list data folder {root}: {err.strerror}") from err
    for class_dir in class_dirs:
        files = _list_files(class_dir, findings)
        stems = {f.with_suffix("") for f in files if f.suffix.lower() in {".jpg", ".jpeg"}}
        for f in files:
            suffix = f.suffix.lower()
            if suffix not in IMAGE_SUFFIXES:
                findings.append(
                    Finding(
                        "not_an_image",
                        Severity.WARN,
                        f"suffix {suffix!r} is not an image type; skipped",
                        str(f),
                    )
                )
                continue
            # A PNG beside a JPEG of the same name is that image's pixel mask, not an image.
            if suffix == ".png" and f.with_suffix("") in stems:
                continue
            mask = f.with_suffix(".png")
            rows.append(
                {
                    "path": str(f),
                    "label": class_dir.name,
                    "mask_path": str(mask) if suffix != ".png" and mask.exists() else None,
                }
            )
    if not rows:
        raise DataError(f"no images found under {root}; expected one folder per class holding images")
    return ScanResult(pd.DataFrame(rows), findings, root)


def _list_files(folder: Path, findings: list[Finding]) -> list[Path]:
    """All files below `folder`; a sub-folder that cannot be read becomes a finding, not a crash."""
    files: list[Path] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError as err:
        reason = err.strerror or type(err).__name__
        findings.append(
            Finding(
                "unreadable_folder",
                Severity.ERROR,
                f"cannot list folder: {reason}; its images are skipped",
                str(folder),
            )
        )
        return files
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files.extend(_list_files(entry, findings))
        elif entry.is_file():
            files.append(entry)
        else:
            findings.append(
                Finding("unreadable_file", Severity.ERROR, "not a regular file (broken link?)", str(entry))
            )
    return files


def _read_csv_manifest(csv_path: Path) -> ScanResult:
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read manifest {csv_path}: {err}") from err
    missing = {"path", "label"} - set(table.columns)
    if missing:
        raise DataError(
            f"manifest {csv_path} lacks column(s) {sorted(missing)}; expected header path,label[,group]"
        )
    findings: list[Finding] = []
    keep = []
    for row_number, row in enumerate(table.itertuples(index=False), start=2):  # row 1 is the header
        path = (csv_path.parent / row.path).resolve() if row.path else None
        if path is None or not path.is_file():
            findings.append(
                Finding("missing_file", Severity.ERROR, "file does not exist", str(row.path), row_number)
            )
            continue
        if not row.label:
            findings.append(Finding("missing_label", Severity.ERROR, "label is empty", str(path), row_number))
            continue
        keep.append(row_number - 2)
    manifest = table.iloc[keep].copy()
    manifest["path"] = [str((csv_path.parent / p).resolve()) for p in manifest["path"]]
    if "mask_path" in manifest:
        manifest["mask_path"] = [
            str((csv_path.parent / p).resolve()) if p else None for p in manifest["mask_path"]
        ]
    manifest["row"] = [k + 2 for k in keep]
    return ScanResult(manifest.reset_index(drop=True), findings, csv_path.parent)


def _assign_groups(
    manifest: pd.DataFrame, group_by: GroupBy, gap: int, findings: list[Finding]
) -> tuple[pd.DataFrame, GroupBy]:
    """The manifest with its `group` column filled, and the way the groups were found."""
    manifest = manifest.copy()
    for column in MANIFEST_COLUMNS:
        if column not in manifest:
            manifest[column] = None
    names = manifest["path"].map(lambda p: Path(p).stem)
    matches = names.map(FRAME_NAME.match)
    manifest["lighting"] = [m["lighting"] if m else None for m in matches]
    has_groups = manifest["group"].notna().all() and (manifest["group"] != "").all()
    if group_by == GroupBy.AUTO:
        if has_groups:
            group_by = GroupBy.COLUMN
        elif matches.map(bool).all():
            group_by = GroupBy.FRAME_CLUSTERS
        else:
            group_by = GroupBy.FILE
            findings.append(
                Finding(
                    "no_groups",
                    Severity.WARN,
                    "no group column and names carry no frame numbers: each file is its own group, "
                    "so several photos of one part could straddle the split",
                )
            )
    if group_by == GroupBy.COLUMN:
        if not has_groups:
            raise DataError("group_by=column but the manifest's group column is missing or has empty cells")
    elif group_by == GroupBy.FILE:
        manifest["group"] = manifest["path"]
    else:
        frames = [int(m["frame"]) if m else None for m in matches]
        manifest["group"] = frame_cluster_groups(frames, manifest["path"].tolist(), gap)
    return manifest[MANIFEST_COLUMNS + [c for c in manifest.columns if c not in MANIFEST_COLUMNS]], group_by


def frame_cluster_groups(frames: list[int | None], paths: list[str], gap: int) -> list[str]:
    """Group images whose sorted frame numbers lie within `gap` of the previous one.

    On the magnetic tiles one tile is shot once per lighting session and the camera's frame
    counter barely moves between those shots, so a run of close frame numbers is one tile.
    Clustering runs across classes on purpose: 14 runs on the magnetic tiles mix labels (one
    tile filed as Blowhole under four lamps and as Free under two), and a per-class clustering
    would let those views straddle the split. Files without a frame number are their own group.
    """
    groups: list[str] = list(paths)
    numbered = sorted((frame, index) for index, frame in enumerate(frames) if frame is not None)
    previous = start = None
    for frame, index in numbered:
        if previous is None or frame - previous > gap:
            start = frame
        groups[index] = f"frames-{start}"
        previous = frame
    return groups
