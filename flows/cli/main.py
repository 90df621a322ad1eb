"""The `shopfloor` command line: every command calls a flow or a stage function and prints the result.

Errors the user can act on (bad data, bad config, unknown model) are printed as one clear
message and exit code 2; a traceback only appears with SHOPFLOOR_DEBUG=1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from typer.core import TyperGroup

from core.errors import ShopfloorError
from core.settings import DEFAULT_TRACKING_URI
from flows.cli.device import app as device_app
from flows.cli.edge import app as edge_app
from flows.cli.monitor import app as monitor_app
from flows.cli.options import (
    ConfigOption,
    GoodOption,
    ImageDataOption,
    LineOption,
    ProcessesOption,
    SetOption,
    shortcut_settings,
)
from flows.cli.refusals import refusal
from flows.cli.registry import app as registry_app
from flows.cli.stack import app as stack_app
from flows.cli.vibration import score_app, train_anomaly
from flows.report import console, hide_console_tracebacks, print_findings, quarantine_summary


def say_error(err: object) -> None:
    """The one line a user acts on; its text is printed as written (a rule name like "[min_per_class]"
    is not markup)."""
    console.print(f"[red]error:[/red] {escape(str(err))}")


class GuardedGroup(TyperGroup):
    """The root command: an error the user can act on becomes one line and exit code 2, whether the
    CLI runs from the shell (`main`) or from another program (Typer's test runner, a Prefect worker)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ShopfloorError as err:
            if os.environ.get("SHOPFLOOR_DEBUG"):
                raise
            say_error(err)
            raise typer.Exit(2) from None
        except Exception as err:
            refused = refusal(err)
            if refused is None or os.environ.get("SHOPFLOOR_DEBUG"):
                raise
            say_error(refused)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=GuardedGroup,
    help="shopfloor: data gates, training, registry and edge delivery for factory AI.",
    no_args_is_help=True,
    add_completion=False,
)
train_app = typer.Typer(
    help="Train models (each run is logged to MLflow and registered).", no_args_is_help=True
)
check_app = typer.Typer(help="Run data checks without training.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Inspect and restore quarantined files.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(check_app, name="check")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(registry_app, name="registry")
app.add_typer(edge_app, name="edge")
app.add_typer(device_app, name="device")
app.add_typer(monitor_app, name="monitor")
app.add_typer(stack_app, name="stack")
app.add_typer(score_app, name="score")


DataVersionOption = Annotated[
    str | None,
    typer.Option(
        "--data-version",
        help="Train on this DVC data version (the md5 of a .dvc file or dvc.lock, `<md5>.dir`), pulled "
        "from the DVC remote (the stack's: `shopfloor stack env`); --data then only names its folder.",
    ),
]

RemoteOption = Annotated[
    bool,
    typer.Option(
        "--remote", help="Submit to the team stack's worker (PREFECT_API_URL) instead of running here."
    ),
]


@train_app.command("defects")
def train_defects(
    data: ImageDataOption = Path("data/magnetic_tiles"),
    config: ConfigOption = None,
    set_: SetOption = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Continue a killed run: its MLflow run id, or 'last'.")
    ] = None,
    remote: RemoteOption = False,
    data_version: DataVersionOption = None,
    processes: ProcessesOption = None,
    good: GoodOption = None,
    line: LineOption = None,
) -> None:
    """Check the data, train a defect classifier on part-grouped splits, evaluate, register."""
    from core.config import load_config
    from core.errors import DataError
    from flows.images.config import DefectJobConfig

    set_ = [*(set_ or []), *shortcut_settings(processes=processes, good=good, line=line)]

    cfg = load_config(DefectJobConfig, config, set_)  # fail on a bad setting before Prefect starts
    if data_version is not None:
        data_version = prepare_data_version(data_version, data, cfg.checks.cache_dir, remote)
    elif not data.exists():
        raise DataError(
            f"data source {data} does not exist; pass a class-per-folder image tree or a CSV manifest"
        )
    else:
        from flows.images.preflight import preflight

        preflight(cfg, data, None if remote else "check")
    if remote:
        return submit_training("train-defect-classifier", data, config, set_, data_version)
    hide_console_tracebacks()  # Prefect logs failed tasks with tracebacks; the CLI prints one line
    from flows.images.flow import train_defect_classifier
    from flows.prefect_api import prefect_api

    with prefect_api():  # a temporary API that dies with this process, unless PREFECT_API_URL names one
        train_defect_classifier(
            str(data), str(config) if config else None, list(set_ or []), resume, data_version=data_version
        )


train_app.command("anomaly")(train_anomaly)


@train_app.command("image-anomaly")
def train_image_anomaly(
    data: ImageDataOption = Path("data/magnetic_tiles"),
    config: ConfigOption = None,
    set_: SetOption = None,
    good: GoodOption = None,
    line: LineOption = None,
    remote: RemoteOption = False,
    data_version: DataVersionOption = None,
) -> None:
    """Fit an image anomaly model on good parts only (PatchCore), threshold it on held-out good parts, register it as `<line>-anomaly`."""
    from core.config import load_config
    from core.errors import DataError
    from flows.images.config import ImageAnomalyJobConfig
    from flows.images.preflight import preflight

    set_ = [*(set_ or []), *shortcut_settings(good=good, line=line)]
    cfg = load_config(ImageAnomalyJobConfig, config, set_)  # fail on a bad setting before Prefect starts
    if data_version is not None:
        data_version = prepare_data_version(data_version, data, cfg.checks.cache_dir, remote)
    elif not data.exists():
        raise DataError(
            f"data source {data} does not exist; pass a class-per-folder image tree or a CSV manifest"
        )
    else:
        preflight(cfg, data, None if remote else "check")
    if remote:
        return submit_training("train-image-anomaly", data, config, set_, data_version)
    hide_console_tracebacks()
    from flows.images.anomaly import train_image_anomaly as run_flow
    from flows.prefect_api import prefect_api

    with prefect_api():
        run_flow(str(data), str(config) if config else None, list(set_), data_version=data_version)


def prepare_data_version(version: str, data: Path, cache_dir: Path, remote: bool) -> str:
    """`--data-version`: a malformed hash is refused here; for a run here the version is pulled now, so a
    hash the DVC remote lacks fails before Prefect starts (the flow reuses the copy). A worker pulls its own
    (`submit_training` first checks that the remote has it)."""
    from data_checks.versioning import checked_data_version, fetch_data_version

    version = checked_data_version(version)
    if not remote:
        fetch_data_version(version, data.name, cache_dir)
    return version


def submit_training(
    flow_name: str, data: Path, config: Path | None, set_: list[str] | None, data_version: str | None = None
) -> None:
    """`--remote`: the team deployment runs it on a worker; the worker must see `data` and `config` at the
    same paths (the stack's machine, or a shared checkout), or pull `data_version` from the DVC remote."""
    from core.errors import DataError

    if not os.environ.get("PREFECT_API_URL"):
        raise DataError(
            '--remote needs the team stack: run `eval "$(shopfloor stack env)"` first (PREFECT_API_URL is not set)'
        )
    if data_version is not None:  # refused here, not on the worker after the user has left
        from data_checks.versioning import require_in_remote

        require_in_remote(data_version)
    from flows.deploy import submit

    parameters = {
        "data": str(data.resolve()) if data_version is None else data.name,
        "config": str(config.resolve()) if config else None,
        "overrides": list(set_ or []),
    } | ({"data_version": data_version} if data_version else {})
    run_id, page = submit(flow_name, parameters)
    console.print(f"submitted {flow_name} as flow run {run_id}; follow it at {page}")


@check_app.command("images")
def check_images(
    data: Annotated[Path, typer.Option("--data", "-d", help="Image folder or CSV manifest.")],
    config: ConfigOption = None,
    set_: SetOption = None,
    out: Annotated[Path, typer.Option(help="Where findings, manifest and Data Docs go.")] = Path(
        "artifacts/checks"
    ),
) -> None:
    """Run the image gate: GX suites, duplicates, label conflicts; quarantine failing files."""
    from core.config import load_config
    from data_checks.images.gate import check_image_dataset
    from flows.images.config import DefectJobConfig

    cfg = load_config(DefectJobConfig, config, set_)
    checked = check_image_dataset(cfg.checks, data, out)
    print_findings(checked.findings)
    console.print(quarantine_summary(checked.quarantined, cfg.checks.quarantine_dir))
    console.print(f"{checked.counts()}\nFindings: {checked.files['findings']}  Data Docs: {checked.docs_dir}")


@quarantine_app.command("restore")
def quarantine_restore(
    folder: Annotated[Path, typer.Argument(help="The quarantine store (checks.quarantine_dir).")] = Path(
        "quarantine"
    ),
) -> None:
    """Put every file the checks moved out (quarantine_mode: move) back where it came from, never
    overwriting and never outside its data set; the copies stay in the store. Excluded files never left."""
    from core.errors import DataError
    from data_checks.quarantine import restore

    report = restore(folder)
    console.print(f"restored {len(report.restored)} file(s)" + "".join(f"\n  {p}" for p in report.restored))
    if report.excluded:
        console.print(
            f"{len(report.excluded)} excluded file(s) never left the data folder; fix them and check again"
        )
    if report.refused:
        raise DataError(f"{len(report.refused)} file(s) not restored:\n  " + "\n  ".join(report.refused))


@app.command("ui")
def ui(
    port: Annotated[int, typer.Option(help="Port.")] = 5000,
    host: Annotated[str, typer.Option(help="Bind address (127.0.0.1: this machine only).")] = "127.0.0.1",
    tracking_uri: Annotated[str, typer.Option(help="The store the flows write to.")] = DEFAULT_TRACKING_URI,
) -> None:
    """Start the MLflow UI on the same store the flows use; it stops when this command stops."""
    from flows.processes import start_child, stop_on_signals

    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", host,
               "--port", str(port), "--workers", "1"]  # fmt: skip
    # MLflow 3 opens in its GenAI view; the URL parameter switches to the model-training view (the
    # browser keeps the choice). Its assistant panel closes with its X and stays closed.
    console.print(
        f"MLflow UI on http://{host}:{port}/#/experiments?workflowType=machine_learning  (Ctrl-C to stop)"
    )
    with stop_on_signals(start_child(command)) as child:
        raise typer.Exit(child.wait())


def run_guarded(typer_app: typer.Typer) -> None:
    """Run a Typer app; user-facing errors become one message and exit code 2, a bug one line and 1."""
    try:
        typer_app()
    except ShopfloorError as err:
        if os.environ.get("SHOPFLOOR_DEBUG"):
            raise
        say_error(err)
        sys.exit(2)
    except Exception as err:  # a bug, not a user error: still one line, with the way to see more
        if os.environ.get("SHOPFLOOR_DEBUG"):
            raise
        console.print(
            f"[red]unexpected error ({type(err).__name__}):[/red] {escape(str(err))}\nRe-run with SHOPFLOOR_DEBUG=1 to see the traceback, and please report it."
        )
        sys.exit(1)


def main() -> None:
    run_guarded(app)


if __name__ == "__main__":
    main()
