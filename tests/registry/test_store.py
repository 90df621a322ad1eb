"""Issue 22: the store (mlflow.db with its artifacts, frozen evaluation sets, quarantine, edge state)
keeps working after its project folder is moved."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_checks.findings import Finding, Severity
from data_checks.quarantine import quarantine
from device.client import EdgeClient, PullError
from edge.devices import DeviceStore
from edge.server import EdgeSettings, create_app
from registry.images import release
from registry.tracking import TrackingConfig, configure
from tests.fixtures.models import LENIENT, register_exports
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.slow


def test_a_moved_project_keeps_its_registry_frozen_set_quarantine_and_edge_state(
    exported_pair, tile_subset_master, tmp_path, monkeypatch
):
    reports, manifest = exported_pair
    project = tmp_path / "project"
    data = Path(shutil.copytree(tile_subset_master, project / "data" / "tiles"))
    manifest = manifest.assign(
        path=[str(data / Path(p).relative_to(tile_subset_master)) for p in manifest["path"]]
    )
    monkeypatch.chdir(project)
    uri = "sqlite:///mlflow.db"  # relative, as the CLI's default
    configure(TrackingConfig(tracking_uri=uri, experiment="tiles", model_name="tiles"))
    v1, v2 = register_exports(reports, manifest=manifest)
    frozen = manifest[manifest["split"] == "test"]
    assert release(LENIENT, "tiles", v1, reports[0].flat(), frozen, "test")[1]
    settings = EdgeSettings(state_dir=Path("edge-state"), tracking_uri=uri)
    create_app(settings)  # the signing key
    token = DeviceStore(settings.devices_path).enroll("press-1")
    bad = data / "MT_Free" / "Imgs" / sorted(p.name for p in (data / "MT_Free" / "Imgs").glob("*.jpg"))[0]
    quarantine(
        [Finding("decode", Severity.ERROR, "planted", str(bad))], data, Path("quarantine"), mode="move"
    )

    moved = tmp_path / "moved-elsewhere"
    shutil.move(project, moved)  # everything after runs in new processes, as after a real move
    approve = shopfloor(moved, "registry", "approve", "tiles", v2, "--override-gates", "--reason", "moved")
    assert approve.returncode == 0, approve.stderr  # artifacts and the frozen set found in the new place
    assert "the store moved" in approve.stderr
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "flows.cli.main", "edge", "serve", "--port", str(port)],
                              cwd=moved, start_new_session=True, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        device = EdgeClient(f"http://127.0.0.1:{port}", token, (moved / "edge-state/keys/public_key.pem").read_bytes(),
                            tmp_path / "device", timeout_s=60)  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                assert device.pull("tiles").version == v2
                break
            except PullError as err:
                assert "cannot reach" in str(err) and time.monotonic() < deadline, err
                time.sleep(0.5)
        device.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    restored = shopfloor(moved, "quarantine", "restore", "quarantine")
    assert restored.returncode == 0, restored.stderr
    assert (moved / "data" / "tiles" / "MT_Free" / "Imgs" / bad.name).exists() and not bad.exists()


def shopfloor(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", "flows.cli.main", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
