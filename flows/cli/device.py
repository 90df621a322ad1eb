"""`shopfloor device ...`: the agent a camera box or sensor gateway runs (the device extra suffices)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.report import console

app = typer.Typer(help="The device agent: score what the line produces, report it, follow approved versions.",
                  no_args_is_help=True)  # fmt: skip


@app.command()
def run(
    model: Annotated[str, typer.Option(help="The model to run (pulled from the edge server).")],
    files: Annotated[list[Path] | None, typer.Argument(help="Files to score (besides the inbox).")] = None,
    inbox: Annotated[Path | None, typer.Option(help="Folder the camera or logger drops files into.")] = None,
    server: Annotated[
        str | None, typer.Option(help="Edge server URL (none: offline, installed model).")
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="SHOPFLOOR_DEVICE_TOKEN", help="This device's token.")
    ] = None,
    public_key: Annotated[Path | None, typer.Option(help="Server public key from enrolment.")] = None,
    dest: Annotated[Path, typer.Option(help="Installed models.")] = Path("device-models"),
    outbox: Annotated[Path, typer.Option(help="Results, one JSON line per file.")] = Path(
        "device-outbox.jsonl"
    ),
    state: Annotated[Path, typer.Option(help="Telemetry buffer and the agent's id.")] = Path("device-state"),
    check_every: Annotated[float, typer.Option(help="Seconds between manifest checks.")] = 60.0,
    window_items: Annotated[int, typer.Option(help="Items per telemetry window.")] = 64,
    window_minutes: Annotated[float, typer.Option(help="Longest telemetry window, in minutes.")] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="Stop when the inbox is empty.")] = False,
) -> None:
    """Score files as they arrive with the approved model; results to the outbox, telemetry to the server."""
    from core.errors import ConfigError
    from device.agent import Agent, AgentConfig
    from device.client import EdgeClient

    if server and not (token and public_key):
        raise ConfigError(
            "--server needs --token (or SHOPFLOOR_DEVICE_TOKEN) and --public-key from enrolment"
        )
    if inbox is None and not files:
        raise ConfigError("give files to score, or --inbox to watch")
    cfg = AgentConfig(model, dest, outbox, state, inbox, check_every, window_items, window_minutes)
    client = EdgeClient(server, token, public_key.read_bytes(), dest) if server else None
    try:
        written = Agent(cfg, client).run(list(files or []), stop_when_idle=once)
    finally:
        if client is not None:
            client.close()
    console.print(f"{written} result(s) written to {outbox}")
