"""`shopfloor monitor ...`: one drift cycle now, where every device stands, a drifted window's images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from core.settings import DEFAULT_EDGE_STATE, DEFAULT_TRACKING_URI
from flows.cli.options import ConfigOption, SetOption
from flows.report import console

app = typer.Typer(help="Drift monitoring of what devices see.", no_args_is_help=True)
StateOption = Annotated[Path, typer.Option("--state", help="The edge server's state folder (telemetry).")]


@app.command()
def run(
    state: StateOption = DEFAULT_EDGE_STATE,
    tracking_uri: Annotated[
        str, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI")
    ] = DEFAULT_TRACKING_URI,
    alpha: Annotated[float, typer.Option(help="False discovery rate across devices.")] = 0.01,
) -> None:
    """One monitoring cycle now (the flow `monitor-drift`): judge new windows, log the cycle, raise events."""
    from flows.monitor.flow import monitor_drift
    from flows.prefect_api import prefect_api
    from flows.report import hide_console_tracebacks

    hide_console_tracebacks()
    with prefect_api():
        summary = monitor_drift(str(state), tracking_uri, alpha)
    console.print(f"{summary.windows} window(s) judged; in drift: {', '.join(summary.drift) or 'none'}; "
                  f"{summary.events} drift event(s) raised; MLflow run {summary.run_id}")  # fmt: skip
    if summary.skipped:
        console.print(f"{summary.skipped} window(s) skipped: their model version has no drift reference (registered "
                      "before drift monitoring existed); a version trained now gets one at registration.")  # fmt: skip


@app.command()
def status(state: StateOption = DEFAULT_EDGE_STATE) -> None:
    """One row per device and model: version, last window, strongest test, q-value, state, estimated accuracy."""
    from monitor.store import MonitorStore

    table = Table(title="drift monitoring", title_justify="left")
    for column in (
        "device",
        "model",
        "version",
        "last window",
        "drift statistic",
        "q",
        "state",
        "est. accuracy",
        "why",
    ):
        table.add_column(column, overflow="fold")
    colour = {"drift": "red", "watch": "yellow", "ok": "green"}
    for s in MonitorStore(state / "monitor.db").states():
        table.add_row(s.device, s.model, s.version or "-", s.last_window or "-", s.statistic or "-",
                      "-" if s.q_value is None else f"{s.q_value:.3g}", f"[{colour[s.state]}]{s.state}[/{colour[s.state]}]",
                      "-" if s.accuracy is None else f"{s.accuracy:.2f}", s.explanation or "")  # fmt: skip
    console.print(table)


@app.command()
def serve(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Serve the loop until stopped: monitor-drift every `every_s` seconds, and the retraining flows that
    drift events start (flows/monitor/deployments.py). Uses PREFECT_API_URL, or starts a local Prefect server."""
    from core.config import load_config
    from flows.monitor.config import LoopConfig

    cfg: LoopConfig = load_config(LoopConfig, config, set_)
    from prefect import serve as prefect_serve

    from flows.monitor.deployments import loop_deployments
    from flows.prefect_api import prefect_api

    with prefect_api(full=True) as url:
        console.print(f"Prefect API {url}: monitor-drift every {cfg.every_s} s; drift of {cfg.vibration.model} "
                      f"retrains on {cfg.vibration.data}" + "".join(f", of {t.model} on {t.data}" for t in cfg.images))  # fmt: skip
        prefect_serve(*loop_deployments(cfg), print_starting_message=False)


@app.command()
def samples(
    device: Annotated[str, typer.Argument(help="The device, as `shopfloor monitor status` names it.")],
    window: Annotated[
        str | None, typer.Option(help="Window id (default: the device's last judged window, drifted first).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the images and their manifest.csv.")] = Path(
        "to-label"
    ),
    state: StateOption = DEFAULT_EDGE_STATE,
) -> None:
    """The images of a drifted window, for labelling: asks DEVICE for them (it sends up to 16 after its
    next manifest check), or, once they arrived, copies them to OUT with a manifest.csv (path, label,
    group) whose label column you fill in; the defect flow reads that file as a data set."""
    from core.errors import DataError
    from edge.samples import SampleStore
    from monitor.store import MonitorStore

    if window is None:
        known = sorted((s for s in MonitorStore(state / "monitor.db").states() if s.device == device and s.last_window),
                       key=lambda s: s.state != "drift")  # fmt: skip
        if not known:
            raise DataError(
                f"no judged window from device {device!r}: check the name with `shopfloor monitor status`, or pass --window"
            )
        window = known[0].last_window
    store = SampleStore(state / "samples")
    found = store.get(device, window) or store.request(device, window)
    if found.state == "requested":
        console.print(f"asked {device} for the images of window {window}; it sends them after its next manifest check. "
                      "Run this command again to export them.")  # fmt: skip
    elif found.state == "unavailable":
        console.print(
            f"{device} no longer has the images of window {window} ({found.missing} file(s) gone from its inbox/done)."
        )
        raise typer.Exit(1)
    else:
        manifest = store.export(device, window, out)
        console.print(f"{found.files} image(s) of window {window} from {device} in {out}/; "
                      f"fill in the label column of {manifest} (the model's class names) and train on it.")  # fmt: skip
