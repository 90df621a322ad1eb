"""Keep bad files out of training without losing one, and without touching the user's data by default.

The data folder is the user's (often DVC-tracked, read-only or shared). By default a bad file is
*excluded*: it stays where it is, the run trains without it, and the quarantine store keeps a copy
with why, its sha256 and where it came from. Moving files out of the data folder is an explicit
option (`checks.quarantine_mode: move`), refused on a DVC-tracked folder, whose recorded data
version would no longer match.

Store layout (`checks.quarantine_dir`, `quarantine/` in the working folder by default):
  <dataset id>/<content>-<path>/<file name>   the copy (and its mask, if any)
  <dataset id>/<content>-<path>/entry.json    rules, messages, relative path, dataset root, mode
  quarantine_log.csv                          every exclusion, move and restore, appended
An entry is unique per data set, content and path (<content>, <path>: prefixes of their sha256),
so nothing is ever overwritten: the same file found again is the same entry, an edited file is a
new one, and a different file can never land on an existing entry (that is an error that keeps
both). Paths are recorded relative to the data set's root, and the root relative to the
folder that holds the store when it lies inside it, so a copied or moved project restores into
itself, never into the place it was copied from.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.errors import DataError
from data_checks.findings import Finding

LOG_NAME = "quarantine_log.csv"
ENTRY = "entry.json"
EXCLUDE, MOVE = "exclude", "move"


class QuarantineError(DataError):
    """The store cannot take or give back a file safely; nothing was overwritten."""


@dataclass(frozen=True)
class QuarantinedItem:
    original: str  # the path as the data set named it
    relpath: str  # relative to the data set's root
    sha256: str
    kept_at: str  # the copy in the store
    rules: tuple[str, ...]
    reason: str
    mode: str  # "exclude": the file stayed in the data folder; "move": it was taken out


@dataclass(frozen=True)
class RestoreReport:
    restored: list[str]
    refused: list[str]  # "path: why", nothing written for these
    excluded: list[str]  # never moved: they are still in the data folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def anchor_of(store: Path) -> Path:
    """The folder the store lives in (the project): recorded roots are relative to it."""
    return store.resolve().parent


def root_record(root: Path, anchor: Path) -> str:
    """The data set's root as stored: relative to the anchor when inside it, absolute otherwise."""
    resolved = root.resolve()
    return str(resolved.relative_to(anchor)) if resolved.is_relative_to(anchor) else str(resolved)


def dataset_id(record: str) -> str:
    """A folder name per data set: readable, and unique per recorded root."""
    return f"{Path(record).name or 'data'}-{hashlib.sha256(record.encode()).hexdigest()[:8]}"


def dvc_tracked(folder: Path) -> Path | None:
    """The DVC file that tracks `folder` (a `<folder>.dvc` beside it or beside a parent, or a
    dvc.yaml / dvc.lock naming it as a dependency or output), or None."""
    target = folder.resolve()
    for parent in [target, *target.parents]:
        if parent.name and parent.with_name(parent.name + ".dvc").is_file():
            return parent.with_name(parent.name + ".dvc")
        for name in ("dvc.yaml", "dvc.lock"):
            spec = parent / name
            if spec.is_file() and target.is_relative_to(parent):
                relative = str(target.relative_to(parent))
                named = {line.strip().lstrip("-").strip().removeprefix("path:").strip().rstrip("/:")
                         for line in spec.read_text().splitlines()}  # fmt: skip
                if relative != "." and relative in named:
                    return spec
    return None


def _append_log(store: Path, rows: list[list[str]]) -> None:
    log = store / LOG_NAME
    new = not log.exists()
    with log.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["time", "action", "dataset", "relpath", "sha256", "rules", "reason"])
        writer.writerows(rows)


def _relpath(source: Path, root: Path) -> str:
    try:
        return str(source.resolve().relative_to(root.resolve()))
    except ValueError:  # a CSV manifest may name files outside its folder: keep their absolute path
        return str(source.resolve())


def _keep(source: Path, entry: Path, record: dict, companion: Path | None) -> None:
    """Copy the file (and companion) into a new entry; an existing entry must hold the same bytes."""
    if entry.exists():
        held = json.loads((entry / ENTRY).read_text())
        if (held["sha256"], held["relpath"]) != (record["sha256"], record["relpath"]):
            raise QuarantineError(
                f"{entry} already holds another file ({held['relpath']}); both kept, nothing overwritten"
            )
        return
    staging = entry.with_name(entry.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy2(source, staging / source.name)
    if companion is not None:
        shutil.copy2(companion, staging / companion.name)
    (staging / ENTRY).write_text(json.dumps(record, indent=2))
    os.replace(staging, entry)  # atomic: an entry is complete or absent


def quarantine(findings: list[Finding], data_root: Path, store: Path, companions: dict[str, str] | None = None,
               mode: str = EXCLUDE) -> list[QuarantinedItem]:  # fmt: skip
    """Keep a copy of every file named by `findings` (and its mask) in the store; with mode "move",
    take the originals out of the data folder too (refused when DVC tracks it)."""
    if mode not in (EXCLUDE, MOVE):
        raise QuarantineError(f"checks.quarantine_mode must be 'exclude' or 'move', got {mode!r}")
    if mode == MOVE and (tracker := dvc_tracked(data_root)) is not None:
        raise QuarantineError(
            f"{data_root} is tracked by DVC ({tracker}): moving files out would change the data version the run "
            "records; keep checks.quarantine_mode=exclude (the default), or fix the files and commit a new version"
        )
    by_path: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        if finding.path and Path(finding.path).is_file():
            by_path[finding.path].append(finding)
    record_root = root_record(data_root, anchor_of(store))
    folder, now, kept, log = store / dataset_id(record_root), _now(), [], []
    for path_str, items in sorted(by_path.items()):
        source, sha = Path(path_str), _sha256(Path(path_str))
        extra = (companions or {}).get(path_str)
        companion = Path(extra) if isinstance(extra, str) and extra and Path(extra).is_file() else None
        rules, reason = (
            tuple(sorted({f.rule for f in items})),
            "; ".join(f"[{f.rule}] {f.message}" for f in items),
        )
        record = {"relpath": _relpath(source, data_root), "dataset_root": record_root, "sha256": sha, "mode": mode,
                  "rules": list(rules), "findings": [f.describe() for f in items], "quarantined_at": now,
                  "companion": companion.name if companion else None, "status": "moved" if mode == MOVE else "excluded"}  # fmt: skip
        entry = folder / f"{sha[:20]}-{hashlib.sha256(record['relpath'].encode()).hexdigest()[:8]}"
        _keep(source, entry, record, companion)
        if mode == MOVE:
            source.unlink()
            if companion is not None:
                companion.unlink()
        kept.append(
            QuarantinedItem(path_str, record["relpath"], sha, str(entry / source.name), rules, reason, mode)
        )
        log.append([now, mode, folder.name, record["relpath"], sha, " ".join(rules), reason])
    if log:
        _append_log(store, log)
    return kept


def _restore_entry(entry_file: Path, anchor: Path) -> str:
    """Copy one moved file back; returns the path written. QuarantineError when it may not be written."""
    record = json.loads(entry_file.read_text())
    root = Path(record["dataset_root"])
    root = root if root.is_absolute() else anchor / root
    relpath = Path(record["relpath"])
    target = (root / relpath).resolve()
    if relpath.is_absolute() or not target.is_relative_to(root.resolve()):
        raise QuarantineError(f"{record['relpath']}: outside its data set's root {root}; not restored")
    held = entry_file.parent / relpath.name
    files = [(held, target)]
    if record.get("companion"):
        files.append((entry_file.parent / record["companion"], target.with_name(record["companion"])))
    for _, destination in files:
        if destination.exists():
            raise QuarantineError(f"{destination} exists; restore never overwrites (move it away first)")
    for copy, destination in files:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(copy, destination)
    record["status"], record["restored_at"] = "restored", _now()
    entry_file.write_text(json.dumps(record, indent=2))
    return str(target)


def restore(store: Path) -> RestoreReport:
    """Put every moved file back where its data set (as found from this store) keeps it; the copies stay."""
    if not store.is_dir():
        raise QuarantineError(
            f"no quarantine store at {store}; pass the folder named by checks.quarantine_dir"
        )
    anchor, restored, refused, excluded, log = anchor_of(store), [], [], [], []
    for entry_file in sorted(store.glob(f"*/*/{ENTRY}")):
        record = json.loads(entry_file.read_text())
        if record["status"] == "excluded":
            excluded.append(record["relpath"])
            continue
        if record["status"] != "moved":
            continue
        try:
            restored.append(_restore_entry(entry_file, anchor))
            log.append(
                [
                    _now(),
                    "restore",
                    entry_file.parent.parent.name,
                    record["relpath"],
                    record["sha256"],
                    "",
                    "",
                ]
            )
        except QuarantineError as err:
            refused.append(str(err))
    if log:
        _append_log(store, log)
    return RestoreReport(restored, refused, excluded)
