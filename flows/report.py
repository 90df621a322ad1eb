"""What the CLI prints: short tables a person reads in a terminal (full detail lives in MLflow)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

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


def quarantine_summary(items: list, store) -> str:
    """Where quarantined files went, in one or two lines."""
    if not items:
        return "Quarantine: nothing to set aside"
    moved = sum(item.mode == "move" for item in items)
    where = f"copies and reasons in {Path(items[0].kept_at).parent.parent}"
    if moved:
        return f"Quarantine: {moved} file(s) moved out of the data folder, {where}; `shopfloor quarantine restore {store}` puts them back"
    return f"Quarantine: {len(items)} file(s) excluded from training (the data folder is unchanged), {where}"


class _NoTracebackOnConsole:
    """Logging filter: keep the message, drop the traceback (unless SHOPFLOOR_DEBUG is set).

    Prefect logs a failed task with its traceback. The Prefect API handler runs first and keeps
    the full record for the Prefect UI; the terminal shows one line, and the CLI adds what to do.
    """

    def filter(self, record) -> bool:
        if record.exc_info and not os.environ.get("SHOPFLOOR_DEBUG"):
            error = record.exc_info[1]
            record.msg = f"{record.getMessage().split(' - Retries are exhausted')[0]}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            if error is not None and str(error) not in record.msg:
                record.msg += f": {error}"
        return True


def hide_console_tracebacks() -> None:
    """Attach the filter to Prefect's console handler (Prefect configures logging on import)."""
    import logging

    import prefect.main  # noqa: F401  (configures logging; `import prefect` alone defers it)

    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "PrefectConsoleHandler" and not any(
            isinstance(f, _NoTracebackOnConsole) for f in handler.filters
        ):
            handler.addFilter(_NoTracebackOnConsole())
