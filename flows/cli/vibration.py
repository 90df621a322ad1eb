"""`shopfloor train anomaly` and `shopfloor score anomaly`: thin wrappers, registered in flows/cli/main.py."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from core.settings import DEFAULT_TRACKING_URI
from flows.cli.options import ConfigOption, SetOption
from flows.report import console, print_findings

score_app = typer.Typer(help="Score sensor files with a registered model.", no_args_is_help=True)


def train_anomaly(
    data: Annotated[
        Path,
        typer.Option(
            "--data", "-d", help="Folder of .npz/.csv/.parquet sensor files (normal and fault records)."
        ),
    ] = Path("data/cwru_bearings"),
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Check the sensor data, train an anomaly model on normal windows, evaluate, export ONNX, register, gate."""
    from core.config import load_config
    from core.errors import DataError
    from flows.report import hide_console_tracebacks
    from flows.vibration.config import AnomalyJobConfig

    load_config(AnomalyJobConfig, config, set_)  # fail on a bad setting (or model name) before Prefect starts
    if not data.exists():
        raise DataError(
            f"data source {data} does not exist; pass a folder of .npz/.csv/.parquet sensor files"
        )
    hide_console_tracebacks()  # Prefect logs failed tasks with tracebacks; the CLI prints one line
    from flows.prefect_api import prefect_api
    from flows.vibration.flow import retrain_anomaly_model

    with prefect_api():  # a temporary API that dies with this process, unless PREFECT_API_URL names one
        retrain_anomaly_model(str(data), str(config) if config else None, list(set_ or []))


def _table(report, only_alarms: bool) -> Table:
    table = Table(title=f"{report.path.name}: scored by {report.model}", title_justify="left")
    for column in ("window", "t (s)", "score", "alarm", "explanation"):
        table.add_column(column, overflow="fold")
    for row in report.rows:
        if only_alarms and not (row.alarm or row.flag):
            continue
        if row.flag:
            table.add_row(
                str(row.index),
                f"{row.start_s:.3f}",
                "-",
                "[yellow]FLAGGED[/yellow]",
                f"not scored: {row.flag}",
            )
        else:
            alarm = "[red]ALARM[/red]" if row.alarm else "ok"
            table.add_row(str(row.index), f"{row.start_s:.3f}", f"{row.score:.4g}", alarm, row.explanation)
    return table


def print_score_report(report, only_alarms: bool) -> None:
    """One scored file on the terminal: its screening findings, the windows, and a one-line total."""
    if report.findings:
        print_findings(report.findings, "Sensor checks")
    console.print(_table(report, only_alarms))
    counts = report.counts()
    console.print(
        f"{counts['windows']} windows: {counts['alarms']} alarm(s), {counts['flagged']} flagged (not scored); "
        f"threshold {report.threshold:.4g}; shaft speed {report.rpm:.0f} rpm ({report.rpm_source})"
    )


def write_score_json(reports: list, path: Path) -> None:
    """Every window of every scored file, one object per file."""
    path.write_text(json.dumps([
        {"file": str(r.path), "model": r.model, "threshold": r.threshold, "windows": [asdict(w) for w in r.rows]}
        for r in reports
    ], indent=2))  # fmt: skip


FilesArgument = Annotated[
    list[Path], typer.Argument(help="Sensor files (.npz, .csv with a <file>.json sidecar, .parquet).")
]
RpmOption = Annotated[float | None, typer.Option(help="Shaft speed, when the file does not declare it.")]
RateOption = Annotated[
    float | None, typer.Option("--fs", help="Sample rate in Hz, when the file does not declare it.")
]
HopOption = Annotated[int | None, typer.Option(help="Window hop in samples (default: the model's).")]
OnlyAlarmsOption = Annotated[
    bool, typer.Option("--only-alarms", help="List alarmed and flagged windows only.")
]
JsonOption = Annotated[Path | None, typer.Option("--json", help="Also write every window as JSON here.")]


@score_app.command("anomaly")
def score_anomaly(
    files: FilesArgument,
    model: Annotated[
        str, typer.Option("--model", "-m", help="NAME@alias, NAME/VERSION or a .onnx file.")
    ] = "bearing-anomaly@champion",
    rpm: RpmOption = None,
    fs: RateOption = None,
    hop: HopOption = None,
    only_alarms: OnlyAlarmsOption = False,
    json_out: JsonOption = None,
    config: ConfigOption = None,
    tracking_uri: Annotated[
        str, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow store.")
    ] = DEFAULT_TRACKING_URI,
) -> None:
    """Per-window anomaly score, alarm and explanation for each FILE; bad windows are FLAGGED, never scored."""
    import mlflow

    from core.config import load_config
    from device.vibration import score_file
    from flows.vibration.config import AnomalyJobConfig
    from registry.artifacts import resolve_model

    rules = load_config(AnomalyJobConfig, config).data.rules
    mlflow.set_tracking_uri(tracking_uri)
    reports = []
    with tempfile.TemporaryDirectory() as scratch:
        model_file = resolve_model(model, Path(scratch))
        for file in files:
            reports.append(score_file(file, model_file, rules, rpm, fs, hop, model))
            print_score_report(reports[-1], only_alarms)
    if json_out is not None:
        write_score_json(reports, json_out)
