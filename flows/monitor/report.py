"""The cycle's HTML page, logged to its MLflow run: a table of devices and the plots behind an alarm."""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from matplotlib.figure import Figure


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode()


def q_value_plot(report) -> str:
    """-log10(q) of each window this cycle, the alarm line at alpha."""
    figure = Figure(figsize=(7, 2.6))
    axis = figure.subplots()
    names = [f"{a.device}\n{a.window_id[-6:]}" for a in report.assessments]
    values = [-np.log10(max(a.q_value, 1e-12)) for a in report.assessments]
    axis.bar(
        range(len(values)), values, color=["tab:red" if a.flagged else "tab:grey" for a in report.assessments]
    )
    axis.set_xticks(range(len(values)), names, fontsize=6, rotation=90)
    axis.set_ylabel("-log10 q")
    return _png(figure)


def cycle_html(report, alpha: float) -> str:
    rows = "".join(
        f"<tr class='{html.escape(s.state)}'><td>{html.escape(s.device)}</td><td>{html.escape(s.model)} v{html.escape(str(s.version))}</td>"
        f"<td>{html.escape(s.state)}</td><td>{html.escape(s.last_window or '-')}</td><td>{html.escape(s.statistic or '-')}</td>"
        f"<td>{'-' if s.q_value is None else f'{s.q_value:.3g}'}</td><td>{'-' if s.accuracy is None else f'{s.accuracy:.2f}'}</td>"
        f"<td>{html.escape(s.explanation or '')}</td></tr>"
        for s in sorted(report.states, key=lambda s: (s.state != "drift", s.state != "watch", s.device))
    )  # fmt: skip
    plot = f"<img src='data:image/png;base64,{q_value_plot(report)}'>" if report.assessments else ""
    return (
        "<html><head><meta charset='utf-8'><style>body{font-family:sans-serif} td,th{padding:2px 8px;text-align:left}"
        ".drift{background:#fdd}.watch{background:#ffd}</style></head><body>"
        f"<h2>Drift monitoring cycle</h2><p>{len(report.assessments)} windows judged, {report.skipped} skipped "
        f"(no reference); {len(report.newly_drifted)} device(s) newly in drift; alarms at q &le; {alpha}.</p>"
        "<table><tr><th>device</th><th>model</th><th>state</th><th>last window</th><th>strongest test</th><th>q</th>"
        f"<th>est. accuracy</th><th>explanation</th></tr>{rows}</table>{plot}</body></html>"
    )
