"""`shopfloor edge ...`: the model server and fleet commands, and the device-side commands.

Server side (the platform): serve, enroll, revoke, rollout, status. Device side (a camera box or a
sensor gateway with only `pip install ".[device]"`: no torch, MLflow or Prefect): pull, predict
(images), score (sensor files). Every command imports what it needs when it runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from core.settings import DEFAULT_EDGE_STATE, DEFAULT_TRACKING_URI
from flows.report import console

app = typer.Typer(help="Edge delivery: the model server and the device client.", no_args_is_help=True)
StateOption = Annotated[Path, typer.Option("--state", help="Edge server state: keys, devices, cache.")]
DeviceRoot = Annotated[Path, typer.Option("--dest", help="The device's model folder.")]
DEFAULT_DEVICE_ROOT = Path("device-models")


def _settings(state: Path, tracking_uri: str = DEFAULT_TRACKING_URI):
    from edge.server import EdgeSettings

    return EdgeSettings(state_dir=state, tracking_uri=tracking_uri)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8600,
    state: StateOption = DEFAULT_EDGE_STATE,
    tracking_uri: Annotated[
        str, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI")
    ] = DEFAULT_TRACKING_URI,
    max_body: Annotated[
        int, typer.Option(help="Largest request body in bytes (refused unread above).")
    ] = 65536,
    rate_per_address: Annotated[float, typer.Option(help="Requests per second per client address.")] = 50.0,
    rate_per_token: Annotated[float, typer.Option(help="Requests per second per device token.")] = 5.0,
) -> None:
    """Serve each model's approved champion to enrolled devices (see edge/server.py)."""
    from dataclasses import replace

    import uvicorn

    from edge.guard import RateLimits
    from edge.server import create_app

    limits = RateLimits(per_address_per_s=rate_per_address, per_token_per_s=rate_per_token)
    settings = replace(_settings(state, tracking_uri), max_body_bytes=max_body, limits=limits)
    app_ = create_app(settings)
    console.print(f"edge server on http://{host}:{port}; devices verify with {settings.public_key_path}")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command()
def enroll(
    device: str,
    group: Annotated[
        str, typer.Option(help="'canary' devices get a new approved version first; 'all' after rollout.")
    ] = "all",
    state: StateOption = DEFAULT_EDGE_STATE,
) -> None:
    """Enrol a device (or re-enrol a revoked one): prints its token once (stored hashed) and the public key."""
    from core.signing import load_or_create_key, public_pem
    from edge.devices import DeviceStore, check_device_name, check_group

    check_device_name(device), check_group(group)  # before any file is written
    settings = _settings(state)
    key = load_or_create_key(settings.key_path)
    settings.public_key_path.write_bytes(public_pem(key))
    token = DeviceStore(settings.devices_path).enroll(device, group)
    console.print(
        f"device {device} ({group})\n  token: {token}\n  public key: {settings.public_key_path}\nThe token is not stored in clear: copy it now."
    )


@app.command()
def revoke(device: str, state: StateOption = DEFAULT_EDGE_STATE) -> None:
    """Revoke a device's token: its next request gets 401."""
    from edge.devices import DeviceStore

    DeviceStore(_settings(state).devices_path).revoke(device)
    console.print(f"revoked {device}")


@app.command()
def rollout(
    model: str,
    version: str,
    stage: Annotated[str, typer.Option(help="'canary' or 'all'.")] = "all",
    state: StateOption = DEFAULT_EDGE_STATE,
    tracking_uri: Annotated[
        str, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI")
    ] = DEFAULT_TRACKING_URI,
) -> None:
    """Move an approved version's rollout from the canary group to all devices (or back)."""
    from core.errors import ConfigError
    from edge.devices import GROUPS, DeviceStore
    from registry.tracking import approved_version

    if stage not in GROUPS:
        raise ConfigError(f"--stage must be 'canary' or 'all', got {stage!r}")
    approved_version(tracking_uri, model, version)  # unknown, or not approved: exit 2 with the reason
    DeviceStore(_settings(state).devices_path).set_rollout(model, version, stage)
    console.print(f"{model} v{version}: rollout stage {stage}")


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ms else "never"


@app.command()
def status(state: StateOption = DEFAULT_EDGE_STATE) -> None:
    """Devices with the version each should run and the one it reports; rollout stages; refused versions."""
    from edge.devices import DeviceStore

    store = DeviceStore(_settings(state).devices_path)
    runs = {}
    for a in store.assignments():
        runs.setdefault(a.device, []).append(a)
    table = Table(title="edge devices", title_justify="left")
    for column in ("device", "group", "model", "assigned", "running", "last contact", "status"):
        table.add_column(column)
    for d in store.devices():
        name = d.name + (" [red](revoked)[/red]" if d.revoked else "")
        for a in runs.get(d.name) or [None]:
            behind = (
                a and a.running_version and a.assigned_version and a.running_version != a.assigned_version
            )
            running = (
                (a.running_version or "-") + (" [yellow](behind)[/yellow]" if behind else "") if a else "-"
            )
            table.add_row(name, d.group, a.model if a else "-", (a.assigned_version or "-") if a else "-", running,
                          _when(d.last_seen_ms), (a.status or "-") if a else "-")  # fmt: skip
    console.print(table)
    stages = Table(title="rollouts", title_justify="left")
    for column in ("model", "version", "stage", "since"):
        stages.add_column(column)
    for model, version, stage, since in store.rollouts():
        stages.add_row(model, version, stage, _when(since))
    console.print(stages)
    for r in store.refusals():
        console.print(f"[red]refused[/red] {r.model} v{r.version} ({r.count}x since {_when(r.first_ms)}): {r.reason}; "
                      f"`shopfloor registry approve {r.model} {r.version}` accepts it")  # fmt: skip


# -- device side ---------------------------------------------------------------------------------
@app.command()
def pull(
    model: str,
    server: Annotated[str, typer.Option(help="Edge server URL.")],
    token: Annotated[str, typer.Option(envvar="SHOPFLOOR_DEVICE_TOKEN", help="This device's token.")],
    public_key: Annotated[Path, typer.Option(help="Server public key from enrolment.")],
    dest: DeviceRoot = DEFAULT_DEVICE_ROOT,
) -> None:
    """Device side: fetch the assigned version, verify signature and sha256, install atomically."""
    from core.errors import DataError
    from device.client import EdgeClient

    try:
        key = public_key.read_bytes()
    except OSError as err:
        raise DataError(
            f"--public-key {public_key}: {err.strerror}; copy the server's public key "
            "(the file `shopfloor edge enroll` names) onto this device and pass its path"
        ) from None
    client = EdgeClient(server, token, key, dest)
    try:
        result = client.pull(model)
    finally:
        client.close()
    change = " (new)" if result.changed else " (unchanged)"
    console.print(f"{model}: running version {result.version}{change} at {result.path}")


def _installed(model: str, dest: Path) -> Path:
    from device.client import installed_model

    return installed_model(dest, model)


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    model: Annotated[str, typer.Option(help="Installed model name.")] = "defect-classifier",
    dest: DeviceRoot = DEFAULT_DEVICE_ROOT,
    maps: Annotated[
        Path | None, typer.Option(help="An image anomaly model: write each image's anomaly map here (PNG).")
    ] = None,
) -> None:
    """Device side: judge images with the installed image model (ONNX Runtime): classes and the reject
    decision of a classifier, or the anomaly score, decision and hottest spot of an anomaly model."""
    from core.errors import DataError
    from device.images import predict_files

    verdicts, errors = predict_files(_installed(model, dest), [str(p) for p in images], maps)
    for v in verdicts:
        console.print(f"{v.path}: {v.explain()}", markup=False, highlight=False)
    for err in errors:
        console.print(f"error: {err}", markup=False, highlight=False)
    if errors:
        raise DataError(
            f"{len(errors)} of {len(images)} files could not be read (listed above); the rest were classified"
        )


@app.command()
def score(
    files: Annotated[
        list[Path], typer.Argument(help="Sensor files (.npz, .csv with a <file>.json sidecar).")
    ],
    model: Annotated[str, typer.Option(help="Installed model name.")] = "bearing-anomaly",
    dest: DeviceRoot = DEFAULT_DEVICE_ROOT,
    rpm: Annotated[float | None, typer.Option(help="Shaft speed, when the file does not declare it.")] = None,
    fs: Annotated[
        float | None, typer.Option("--fs", help="Sample rate in Hz, when the file does not declare it.")
    ] = None,
    only_alarms: Annotated[
        bool, typer.Option("--only-alarms", help="List alarmed and flagged windows only.")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write every window as JSON here.")
    ] = None,
) -> None:
    """Device side: score sensor files with the installed vibration model (ONNX Runtime)."""
    from data_checks.vibration.config import SensorRules
    from device.vibration import score_file
    from flows.cli.vibration import print_score_report, write_score_json

    path = _installed(model, dest)
    reports = []
    for file in files:
        reports.append(score_file(file, path, SensorRules(), rpm, fs, None, f"{model} (installed)"))
        print_score_report(reports[-1], only_alarms)
    if json_out is not None:
        write_score_json(reports, json_out)
