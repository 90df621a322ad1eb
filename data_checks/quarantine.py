"""Move bad files aside with the reason, never delete them.

A quarantined file keeps its path relative to the data root under the quarantine folder, with
`<name>.reason.json` beside it (rules broken, messages, original path, time) and a line in
`quarantine_log.csv`. `restore` moves files back once someone has fixed or relabelled them.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from data_checks.findings import Finding

LOG_NAME = "quarantine_log.csv"


@dataclass(frozen=True)
class QuarantinedItem:
    original: str
    moved_to: str
    rules: tuple[str, ...]
    reason: str


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:  # outside the data root (CSV manifests may point anywhere)
        return Path(*path.resolve().parts[1:])


def quarantine(
    findings: list[Finding], data_root: Path, quarantine_dir: Path, companions: dict[str, str] | None = None
) -> list[QuarantinedItem]:
    """Move every file named by `findings` (and its mask, from `companions`) into `quarantine_dir`."""
    by_path: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        if finding.path and Path(finding.path).is_file():
            by_path[finding.path].append(finding)
    moved = []
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for path_str, items in sorted(by_path.items()):
        source = Path(path_str)
        target = quarantine_dir / _relative(source, data_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        reason = "; ".join(f"[{f.rule}] {f.message}" for f in items)
        record = {
            "original": str(source.resolve()),
            "quarantined_at": now,
            "findings": [f.describe() for f in items],
        }
        extra = (companions or {}).get(path_str)
        if isinstance(extra, str) and extra and Path(extra).is_file():
            record["companion"] = str(Path(extra).resolve())
            shutil.move(extra, target.with_name(Path(extra).name))
        shutil.move(source, target)
        target.with_name(target.name + ".reason.json").write_text(json.dumps(record, indent=2))
        item = QuarantinedItem(str(source), str(target), tuple(sorted({f.rule for f in items})), reason)
        moved.append(item)
    if moved:
        _append_log(quarantine_dir / LOG_NAME, moved, now)
    return moved


def _append_log(log: Path, items: list[QuarantinedItem], now: str) -> None:
    new = not log.exists()
    with log.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["quarantined_at", "original", "moved_to", "rules", "reason"])
        for item in items:
            writer.writerow([now, item.original, item.moved_to, " ".join(item.rules), item.reason])


def restore(quarantine_dir: Path) -> list[str]:
    """Move every quarantined file (and companion) back to where it came from; returns the paths."""
    restored = []
    for reason_file in sorted(quarantine_dir.rglob("*.reason.json")):
        record = json.loads(reason_file.read_text())
        held = reason_file.with_name(reason_file.name.removesuffix(".reason.json"))
        original = Path(record["original"])
        original.parent.mkdir(parents=True, exist_ok=True)
        if held.exists():
            shutil.move(held, original)
            restored.append(str(original))
        companion = record.get("companion")
        if companion and held.with_name(Path(companion).name).exists():
            shutil.move(held.with_name(Path(companion).name), companion)
        reason_file.unlink()  # the record of *this* quarantine; the log keeps the history
    return restored
