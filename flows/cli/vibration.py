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

    cfg = load_config(AnomalyJobConfig, config, set_)  # a bad setting or model name fails before Prefect
    if not data.exists():
        raise DataError(
            f"data source {data} does not exist; pass a folder of .npz/.csv/.parquet sensor files"
        )
    preflight(cfg, data)
    hide_console_tracebacks()  # Prefect logs failed tasks with tracebacks; the CLI prints one line
    from flows.prefect_api import prefect_api
    from flows.vibration.flow import retrain_anomaly_model

    with prefect_api():  # a temporary API that dies with this process, unless PREFECT_API_URL names one
        retrain_anomaly_model(str(data), str(config) if config else None, list(set_ or []))


def preflight(cfg, data: Path) -> None:
    """Declarations against every file's header (milliseconds), and the bearing the model will assume."""
    from inputs.vibration.signals import check_declarations, signal_files

    check_declarations(signal_files(data), cfg.data.declared)
    if "bearing" not in cfg.features.model_fields_set:
        console.print(
            f"note: no bearing declared (features.bearing); assuming the CWRU rig's {cfg.features.bearing.name}. "
            "Declare yours by name or numbers (configs/anomaly-pump7.yaml)"
        )


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


def print_score_summary(reports: list, refused: list[str]) -> None:
    """One row per file first (windows, alarms, flagged, the top explanation), then warnings."""
    table = Table(title=f"Scored by {reports[0].model if reports else '-'}", title_justify="left")
    for column in ("file", "windows", "alarms", "flagged", "top explanation"):
        table.add_column(column, overflow="fold")
    for r in reports:
        counts = r.counts()
        alarms = f"[red]{counts['alarms']}[/red]" if counts["alarms"] else "0"
        table.add_row(
            r.path.name, str(counts["windows"]), alarms, str(counts["flagged"]), r.top_explanation() or "-"
        )
    console.print(table)
    if reports:
        console.print(f"threshold {reports[0].threshold:.4g}; an alarm is a window scoring above it")
    for r in reports:
        if r.overlap:
            console.print(f"[yellow]warning:[/yellow] {r.overlap}")
    for line in refused:
        console.print(f"[red]not scored:[/red] {line}")


def write_score_json(reports: list, path: Path) -> None:
    """Every window of every scored file, one object per file, after its summary."""
    path.write_text(json.dumps([
        {"file": str(r.path), "model": r.model, "threshold": r.threshold, "rpm": r.rpm, "rpm_source": r.rpm_source,
         "summary": r.counts() | {"top_explanation": r.top_explanation(), "training_overlap": r.overlap},
         "findings": [asdict(f) for f in r.findings],
         "windows": [asdict(w) for w in r.rows]}
        for r in reports
    ], indent=2, default=str))  # fmt: skip


def training_data_of(model: str) -> dict | None:
    """What the registered version's run trained on (data/training_blocks.json), or None (an .onnx file,
    or a run from before it was logged)."""
    import mlflow

    from inputs.vibration.overlap import ARTIFACT

    if model.endswith(".onnx"):
        return None
    client = mlflow.MlflowClient()
    name, _, alias = model.partition("@")
    version = (
        client.get_model_version_by_alias(name, alias)
        if alias
        else client.get_model_version(*model.split("/", 1))
    )
    try:
        return mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{ARTIFACT}")
    except Exception:  # noqa: BLE001 - MlflowException or OSError: an older run without the record
        return None


def sensor_files(paths: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their sensor files (sorted)."""
    from inputs.vibration.signals import signal_files

    return [f for p in paths for f in signal_files(p)]


FilesArgument = Annotated[
    list[Path],
    typer.Argument(help="Sensor files or folders of them (.npz, .csv with a <file>.json sidecar, .parquet)."),
]
RpmOption = Annotated[float | None, typer.Option(help="Shaft speed, when the file does not declare it.")]
RateOption = Annotated[
    float | None, typer.Option("--fs", help="Sample rate in Hz, when the file does not declare it.")
]
HopOption = Annotated[int | None, typer.Option(help="Window hop in samples (default: the model's).")]
OnlyAlarmsOption = Annotated[
    bool, typer.Option("--only-alarms", help="List alarmed and flagged windows only.")
]
WindowsOption = Annotated[
    bool, typer.Option("--windows", help="After the summary, list every window of every file.")
]
JsonOption = Annotated[
    Path | None,
    typer.Option("--json", help="Write the details (every window, its score and explanation) here."),
]


@score_app.command("anomaly")
def score_anomaly(
    files: FilesArgument,
    model: Annotated[
        str, typer.Option("--model", "-m", help="NAME@alias, NAME/VERSION or a .onnx file.")
    ] = "bearing-anomaly@champion",
    rpm: RpmOption = None,
    fs: RateOption = None,
    hop: HopOption = None,
    windows: WindowsOption = False,
    only_alarms: OnlyAlarmsOption = False,
    json_out: JsonOption = None,
    config: ConfigOption = None,
    tracking_uri: Annotated[
        str, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow store.")
    ] = DEFAULT_TRACKING_URI,
) -> None:
    """Score FILES (or folders) with one model load: a summary per file, then details (--windows, --json).

    Bad windows are FLAGGED, never scored; a file that cannot be scored is named and the rest go on (exit 2)."""
    import mlflow

    from core.config import load_config
    from core.errors import DataError, ShopfloorError
    from device.vibration import VibrationScorer, score_file
    from flows.vibration.config import AnomalyJobConfig
    from inputs.vibration.overlap import training_overlap
    from registry.artifacts import resolve_model

    rules = load_config(AnomalyJobConfig, config).data.rules
    paths = sensor_files(files)
    mlflow.set_tracking_uri(tracking_uri)
    reports, refused = [], []
    with tempfile.TemporaryDirectory() as scratch:
        scorer = VibrationScorer.load(resolve_model(model, Path(scratch)))
        trained_on = training_data_of(model)
        for file in paths:
            try:
                report = score_file(file, scorer, rules, rpm, fs, hop, model)
            except ShopfloorError as err:
                refused.append(str(err).splitlines()[0])
                continue
            report.overlap = training_overlap(report.record, trained_on) if trained_on else ""
            reports.append(report)
    print_score_summary(reports, refused)
    for report in reports if windows or only_alarms else []:
        print_score_report(report, only_alarms)
    if json_out is not None:
        write_score_json(reports, json_out)
        console.print(f"details of {len(reports)} file(s): {json_out}")
    if refused:
        raise DataError(
            f"{len(refused)} of {len(paths)} file(s) not scored (named above); fix or remove them"
        )
