"""The gate every folder of raw sensor files passes before features are computed.

`check_sensor_data` is the stage function: load every file with its declarations, run the
sensor checks, write findings.csv, and stop (DataCheckFailed) when a record breaks a
record-level error rule or when more than `max_bad_fraction` of a record's samples break
sample-level rules (so much damage means a broken sensor or the wrong file, not a few bad
windows). Otherwise the damaged windows are flagged downstream and everything else goes on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_checks.findings import Finding, Severity, findings_frame
from data_checks.vibration.checks import check_records
from data_checks.vibration.config import SensorRules
from data_checks.vibration.rules import CheckedRecord, stop_message, too_damaged
from inputs.vibration.signals import SensorDeclaration, load_signal, signal_files


@dataclass
class CheckedSensorData:
    records: list[CheckedRecord]
    findings: list[Finding]
    fingerprint: str  # sha256 over the input files' names and bytes
    source: Path
    files: dict[str, Path] = field(default_factory=dict)
    docs_dir: Path | None = None

    def counts(self) -> dict[str, int]:
        return {
            "records": len(self.records),
            "samples": sum(r.record.n_samples for r in self.records),
            "bad_samples": sum(int(np.any(list(r.bad_samples.values()), 0).sum()) for r in self.records if r.bad_samples),
            "findings_error": sum(f.severity == Severity.ERROR for f in self.findings),
            "findings_warn": sum(f.severity == Severity.WARN for f in self.findings),
        }  # fmt: skip


def files_fingerprint(files: list[Path]) -> str:
    """sha256 over (file name, file sha256) of every input file: changes when any byte does."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(f"{path.name}:{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def check_sensor_data(source: Path, declared: SensorDeclaration, rules: SensorRules, out_dir: Path,
                      expected_fs: float | None = None) -> CheckedSensorData:  # fmt: skip
    """Load and check every sensor file under `source`; see the module docstring."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = signal_files(source)
    records = check_records(
        [load_signal(path, declared) for path in files], rules, expected_fs, None, out_dir / "data_docs"
    )
    findings = []
    for checked in records:
        damaged = too_damaged(checked, rules)
        if damaged is not None:
            checked.findings.append(damaged)
        findings += checked.findings
    findings_frame(findings).to_csv(out_dir / "findings.csv", index=False)
    blocking = [f for r in records for f in r.record_errors()]
    if blocking:
        raise stop_message("sensor data breaks record-level error rules; nothing was trained", blocking)
    return CheckedSensorData(
        records,
        findings,
        files_fingerprint(files),
        Path(source),
        {"findings": out_dir / "findings.csv"},
        out_dir / "data_docs",
    )
