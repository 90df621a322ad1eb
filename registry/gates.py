"""Gate results shared by every promotion gate (image classifier, vibration model), and where they are kept.

Light to import: the MLflow client is passed in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: float | None
    limit: float | None
    passed: bool
    detail: str = ""


@dataclass
class GateReport:
    checks: list[GateCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}

    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]


def record_gate(client, model: str, version: str, report: GateReport, **tags: str) -> None:
    """Keep the verdict on the version itself (tags `gate_passed`, `gate_report` and any `tags`)."""
    client.set_model_version_tag(model, version, "gate_passed", str(report.passed).lower())
    client.set_model_version_tag(model, version, "gate_report", json.dumps(report.to_dict())[:4900])
    for key, value in tags.items():
        client.set_model_version_tag(model, version, key, value)
