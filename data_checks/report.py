"""The data checks as one self-contained HTML page, for the run's artifacts in the MLflow UI.

MLflow's artifact viewer shows an HTML file on its own, so the Great Expectations Data Docs (whose
`index.html` loads its styles and scripts from neighbouring files) render blank there. This page
carries everything inline: the counts, then each finding (rule, severity, where, what), errors first.
"""

from __future__ import annotations

import html
from pathlib import Path

from data_checks.findings import Finding, Severity

STYLE = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}"
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.error{color:#b00020;font-weight:bold}")  # fmt: skip


def write_checks_html(title: str, counts: dict[str, int], findings: list[Finding], path: Path,
                      shown: int = 500) -> Path:  # fmt: skip
    """Counts, then up to `shown` findings (errors first); the full list stays in findings.csv."""
    ordered = sorted(findings, key=lambda f: (f.severity != Severity.ERROR, f.rule, f.path or ""))
    count_rows = "".join(
        f"<tr><td>{html.escape(k.replace('_', ' '))}</td><td>{v}</td></tr>" for k, v in counts.items()
    )
    finding_rows = "".join(
        f"<tr><td>{html.escape(f.rule)}</td><td class='{f.severity}'>{f.severity}</td>"
        f"<td>{html.escape(f.path or 'data set')}{'' if f.row is None else f' (row {f.row})'}</td>"
        f"<td>{html.escape(f.message)}</td></tr>"
        for f in ordered[:shown]
    )
    more = f"<p>... and {len(ordered) - shown} more in findings.csv</p>" if len(ordered) > shown else ""
    body = (f"<h2>{html.escape(title)}</h2><table>{count_rows}</table><h3>Findings ({len(findings)})</h3>"
            + (f"<table><tr><th>rule</th><th>severity</th><th>where</th><th>what</th></tr>{finding_rows}</table>{more}"
               if findings else "<p>None: every item passed every rule.</p>"))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><style>{STYLE}</style></head><body>{body}</body></html>"
    )
    return path
