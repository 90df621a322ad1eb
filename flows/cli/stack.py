"""`shopfloor stack ...`: the team stack on this machine (stack.team), or a worker joining one."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.report import console

app = typer.Typer(
    help="The team stack: PostgreSQL, S3, MLflow, Prefect, a worker and the edge server.",
    no_args_is_help=True,
)
RootOption = Annotated[
    Path, typer.Option("--root", help="The stack's folder (state, logs, pidfiles, secrets).")
]
HostOption = Annotated[
    str, typer.Option("--host", help="Address every service binds to (loopback unless you open it).")
]


def _stack(root: Path, host: str = "127.0.0.1"):
    from stack.team import Stack, StackConfig

    return Stack.open(StackConfig(root=root, host=host))


@app.command()
def up(root: RootOption = Path("stack-state"), host: HostOption = "127.0.0.1") -> None:
    """Start every service that is not running (each healthy before the next), then print the client settings."""
    from stack.team import up as start_all

    stack = _stack(root, host)
    here = (
        Path.cwd() if (Path.cwd() / ".dvc").is_dir() else None
    )  # this checkout's DVC remote: the stack's bucket
    times = start_all(stack, lambda line: console.print(line), here)
    console.print(
        f'stack up in {sum(times.values()):.1f} s; for clients: eval "$(shopfloor stack env --root {root})"'
    )


@app.command()
def deploy(
    root: RootOption = Path("stack-state"),
    every_s: Annotated[int, typer.Option(help="Seconds between monitor-drift runs.")] = 300,
) -> None:
    """Create or update the deployments of every flow on the stack's work pool (`up` does this too)."""
    from stack.team import deploy as create

    for deployment in create(_stack(root), every_s):
        console.print(f"deployment {deployment}")


@app.command("import-store")
def import_store(
    source: Annotated[
        str, typer.Argument(help="The embedded store, e.g. sqlite:///mlflow.db (run from its folder).")
    ],
    root: RootOption = Path("stack-state"),
) -> None:
    """Copy every experiment, run, artifact, registered model, version (same numbers) and alias of SOURCE
    into the stack's MLflow: moving from the embedded default to the team stack without losing history."""
    import os

    stack = _stack(root)
    os.environ.update(stack.client_env())  # the team MLflow's login, for the client below
    from stack.migrate import import_store as copy

    counts = copy(source, stack.url("mlflow"), lambda line: console.print(line))
    console.print(f"imported {counts['runs']} run(s) of {counts['experiments']} experiment(s), "
                  f"{counts['versions']} version(s) of {counts['models']} model(s)")  # fmt: skip


@app.command()
def down(root: RootOption = Path("stack-state")) -> None:
    """Stop every service (whole process groups); safe to run twice."""
    from stack.team import down as stop_all

    if not stop_all(_stack(root), lambda line: console.print(line)):
        console.print("nothing was running")


@app.command()
def status(root: RootOption = Path("stack-state")) -> None:
    """One row per service: pid, healthy, address."""
    from stack.team import status as check

    table = Table(title=f"stack in {root}", title_justify="left")
    for column in ("service", "pid", "healthy", "address"):
        table.add_column(column)
    for name, (pid, healthy, address) in check(_stack(root)).items():
        table.add_row(name, str(pid or "-"), "[green]yes[/green]" if healthy else "[red]no[/red]", address)
    console.print(table)


@app.command()
def env(root: RootOption = Path("stack-state")) -> None:
    """The settings clients need, as shell exports (secrets included: the file they come from is 0600)."""
    for key, value in _stack(root).client_env().items():
        print(f"export {key}={shlex.quote(value)}")


@app.command()
def join(
    env_file: Annotated[
        Path, typer.Argument(help="The output of `shopfloor stack env` on the stack's machine.")
    ],
    root: RootOption = Path("stack-worker"),
) -> None:
    """Start only a Prefect worker on this machine, for the stack whose `env` output is ENV_FILE."""
    from core.errors import DataError
    from stack.layout import StackPaths
    from stack.services import Service, start
    from stack.team import WORKER_ENV, worker_args

    settings = {}
    for number, line in enumerate(env_file.read_text().splitlines(), 1):
        if line.strip():
            key, _, value = line.removeprefix("export ").partition("=")
            if not key or not value:
                raise DataError(
                    f"{env_file}:{number}: expected `export KEY=VALUE` (the output of `shopfloor stack env`)"
                )
            settings[key.strip()] = shlex.split(value)[0] if value.strip() else ""
    if "PREFECT_API_URL" not in settings:
        raise DataError(f"{env_file}: no PREFECT_API_URL; copy the whole output of `shopfloor stack env`")
    paths = StackPaths(root.resolve())
    start(
        paths,
        Service(
            "worker",
            worker_args(),
            WORKER_ENV
            | settings
            | {"PREFECT_HOME": str(paths.data("prefect"))},  # the stack's heartbeat wins
            cwd=Path.cwd(),
        ),
    )
    console.print(
        f"worker started for {settings['PREFECT_API_URL']}; stop it with `shopfloor stack down --root {root}`"
    )
