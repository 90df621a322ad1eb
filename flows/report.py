"""What the CLI prints: short tables a person reads in a terminal (full detail lives in MLflow)."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console
from rich.table import Table

from data_checks.findings import Finding

console = Console(stderr=True, highlight=False, soft_wrap=True)


def findings_table(findings: list[Finding], title: str = "Data checks") -> Table:
    """One row per (rule, severity): how many items, and the first one as an example."""
    grouped: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for finding in findings:
        grouped[(finding.rule, str(finding.severity))].append(finding)
    table = Table(title=title, title_justify="left")
    for column in ("severity", "rule", "items", "example"):
        table.add_column(column, overflow="fold")
    for (rule, severity), items in sorted(grouped.items(), key=lambda kv: (kv[0][1] != "error", kv[0][0])):
        style = "red" if severity == "error" else "yellow"
        table.add_row(f"[{style}]{severity}[/{style}]", rule, str(len(items)), items[0].describe())
    return table


def print_findings(findings: list[Finding], title: str = "Data checks") -> None:
    if findings:
        console.print(findings_table(findings, title))
    else:
        console.print(f"{title}: all rules passed")
