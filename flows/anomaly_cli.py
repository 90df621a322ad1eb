"""`shopfloor train anomaly` and `shopfloor score anomaly`: thin wrappers, registered in flows/cli.py."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.report import console, print_findings

score_app = typer.Typer(help="Score sensor files with a registered model.", no_args_is_help=True)
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML file; only the keys that differ from the defaults."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one setting, e.g. --set model.name=autoencoder."),
]


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
    from data_checks.errors import DataError
    from flows.anomaly_config import AnomalyJobConfig
    from flows.config import load_config
    from flows.settings import hide_console_tracebacks

    load_config(AnomalyJobConfig, config, set_)  # fail on a bad setting (or model name) before Prefect starts
    if not data.exists():
        raise DataError(
            f"data source {data} does not exist; pass a folder of .npz/.csv/.parquet sensor files"
        )
    hide_console_tracebacks()  # Prefect logs failed tasks with tracebacks; the CLI prints one line
    from flows.anomaly_flow import retrain_anomaly_model

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


@score_app.command("anomaly")
def score_anomaly(
    file: Annotated[
        Path, typer.Argument(help="Sensor file (.npz, .csv with a <file>.json sidecar, .parquet).")
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="NAME@alias, NAME/VERSION or a .onnx file.")
    ] = "bearing-anomaly@champion",
    rpm: Annotated[float | None, typer.Option(help="Shaft speed, when the file does not declare it.")] = None,
    fs: Annotated[
        float | None, typer.Option(help="Sample rate in Hz, when the file does not declare it.")
    ] = None,
    hop: Annotated[int | None, typer.Option(help="Window hop in samples (default: the model's).")] = None,
    only_alarms: Annotated[
        bool, typer.Option("--only-alarms", help="List alarmed and flagged windows only.")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write every window as JSON here.")
    ] = None,
    config: ConfigOption = None,
    tracking_uri: Annotated[
        str, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow store.")
    ] = "sqlite:///mlflow.db",
) -> None:
    """Per-window anomaly score, alarm and explanation for FILE; bad windows are FLAGGED, never scored."""
    import mlflow

    from flows.anomaly_config import AnomalyJobConfig
    from flows.config import load_config
    from registry.anomaly_scoring import resolve_model, score_file

    rules = load_config(AnomalyJobConfig, config).data.rules
    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as scratch:
        model_file = resolve_model(model, Path(scratch))
        report = score_file(file, model_file, rules, rpm, fs, hop, model)
    if report.findings:
        print_findings(report.findings, "Sensor checks")
    console.print(_table(report, only_alarms))
    counts = report.counts()
    console.print(
        f"{counts['windows']} windows: {counts['alarms']} alarm(s), {counts['flagged']} flagged (not scored); "
        f"threshold {report.threshold:.4g}; shaft speed {report.rpm:.0f} rpm ({report.rpm_source})"
    )
    if json_out is not None:
        rows = [asdict(r) for r in report.rows]
        json_out.write_text(
            json.dumps(
                {"file": str(file), "model": model, "threshold": report.threshold, "windows": rows}, indent=2
            )
        )
