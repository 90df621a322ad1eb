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


@app.command()
def simulate(
    folder: Annotated[Path, typer.Argument(help="Images or sensor files to replay.")],
    model: Annotated[str, typer.Option(help="The model the devices run.")],
    server: Annotated[str, typer.Option(help="Edge server URL.")] = "http://127.0.0.1:8600",
    devices: Annotated[int, typer.Option(help="How many devices.")] = 4,
    state: Annotated[
        Path, typer.Option("--state", help="The edge server's state folder (to enrol the devices).")
    ] = Path("edge-state"),
    work: Annotated[Path, typer.Option(help="Where the simulated devices keep their files.")] = Path(
        "simulated-devices"
    ),
    brighter: Annotated[int, typer.Option(help="How many of the devices had their lamp moved.")] = 0,
    brightness: Annotated[float, typer.Option(help="The moved lamp's brightness factor.")] = 1.25,
    window_items: Annotated[int, typer.Option(help="Items per telemetry window.")] = 64,
) -> None:
    """Replay FOLDER as N devices against a running edge server (demos and benchmarks); the last
    --brighter devices see their images brightened, as after someone moved a lamp."""
    import contextlib

    from core.errors import DataError, RegistryError
    from device.simulate import SimulatedDevice
    from device.simulate import simulate as replay
    from edge.devices import DeviceStore

    files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".npz", ".csv"} and "done" not in p.parts
    )
    files = [
        p for p in files if not p.name.endswith(".png") or not p.with_suffix(".jpg").exists()
    ]  # masks beside images
    if not files:
        raise DataError(f"{folder}: no images or sensor files to replay")
    store = DeviceStore(state / "devices.db")
    fleet = []
    for i in range(devices):
        name = f"sim-{i:03d}"
        with contextlib.suppress(RegistryError):  # a device of an earlier simulation gets a new token
            store.revoke(name)
        fleet.append(
            SimulatedDevice(name, store.enroll(name), brightness if i >= devices - brighter else 1.0)
        )
    written = replay(
        files, fleet, server, (state / "keys" / "public_key.pem").read_bytes(), work, model, window_items
    )
    console.print(
        f"{sum(written.values())} result(s) from {devices} simulated device(s); run `shopfloor monitor run` next"
    )
