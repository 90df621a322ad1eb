"""Findings: what a check found wrong, where, and how much it matters.

Every check returns findings instead of printing or raising, so the flow can decide in one place
what stops a run, what quarantines an item and what is only logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from core.errors import DataCheckFailed

if TYPE_CHECKING:
    import pandas as pd


class Severity(StrEnum):
    """`error` on an item quarantines it; on the data set as a whole it stops the flow."""

    ERROR = "error"
    WARN = "warn"


@dataclass(frozen=True)
class Finding:
    """One broken rule: `path` names the file (None for data-set level rules), `row` the CSV row."""

    rule: str
    severity: Severity
    message: str
    path: str | None = None
    row: int | None = None

    def describe(self) -> str:
        where = self.path or "data set"
        if self.row is not None:
            where = f"{where} (manifest row {self.row})"
        return f"{where}: [{self.rule}] {self.message}"


def findings_frame(findings: Iterable[Finding]) -> pd.DataFrame:
    """Findings as a table, for CSV/MLflow logging and the CLI summary."""
    import pandas as pd  # here, not at the top: devices screen sensor files without pandas

    rows = [asdict(f) | {"severity": str(f.severity)} for f in findings]
    return pd.DataFrame(rows, columns=["rule", "severity", "message", "path", "row"])


def stop_message(message: str, findings: list[Finding], shown: int = 20) -> DataCheckFailed:
    """The error that stops a run: `message`, then the first `shown` findings, one per line."""
    lines = [f.describe() for f in findings[:shown]]
    more = f"\n  ... and {len(findings) - shown} more" if len(findings) > shown else ""
    return DataCheckFailed(f"{message}:\n  " + "\n  ".join(lines) + more, findings)
