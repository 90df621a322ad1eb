"""Issue 22's kill findings: servers started for a command die with it, and a run left RUNNING by a
killed process is marked FAILED by the next run. Every process a test starts is stopped (group)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import mlflow
import psutil
import pytest

from tests.fixtures.data import CWRU
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.slow
SMALL = ["--set", "model.isolation_forest.n_estimators=20", "--set", "split.fault_hop=2048",
         "--set", "export.parity_windows=64", "--set", "promotion.max_false_alarm_rate=0.05"]  # fmt: skip


def shopfloor(*args: str, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flows.cli.main", *args], cwd=cwd, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def all_gone(processes: list[psutil.Process], timeout_s: float = 20) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    for p in alive:  # the test must not leave them either
        p.kill()
    return not alive


def cleanup(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_mlflow_ui_stops_with_shopfloor_ui(tmp_path, sig):
    """Finding: SIGTERM of `shopfloor ui` left MLflow serving."""
    port = free_port()
    proc = shopfloor(
        "ui", "--port", str(port), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", cwd=tmp_path
    )
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
                 if _listening(port) else False, 120, "the MLflow UI")  # fmt: skip
        children = descendants(proc.pid)
        assert children
        os.kill(proc.pid, sig)  # the shopfloor process only, as a service manager or `kill` would
        proc.wait(timeout=30)
        assert all_gone(children), "MLflow outlived `shopfloor ui`"
        assert not _listening(port)
    finally:
        cleanup(proc)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _runs(store: str, status: str) -> list:
    mlflow.set_tracking_uri(store)
    experiment = mlflow.get_experiment_by_name("bearing-anomaly")
    if experiment is None:
        return []
    return mlflow.MlflowClient().search_runs([experiment.experiment_id], f"attributes.status = '{status}'")


def test_a_killed_training_leaves_no_server_and_its_run_is_marked_failed_by_the_next(tmp_path):
    """Finding: SIGKILL of `shopfloor train anomaly` left the temporary Prefect API listening and the
    MLflow run RUNNING forever."""
    data = tmp_path / "cwru"
    data.mkdir()
    for name in ("cwru12k_DE_normal_0hp.npz", "cwru12k_DE_IR_007_0hp.npz"):
        shutil.copy2(CWRU / name, data / name)
    store = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["train", "anomaly", "--data", str(data), *SMALL, "--set", f"tracking.tracking_uri={store}",
            "--set", f"work_dir={tmp_path}/runs"]  # fmt: skip
    proc = shopfloor(*args, cwd=tmp_path)
    try:
        wait_for(lambda: _runs(store, "RUNNING"), 180, "the flow's MLflow run")
        children = descendants(proc.pid)
        assert any("uvicorn" in " ".join(c.cmdline()) for c in children), [c.cmdline() for c in children]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert all_gone(children), "the temporary Prefect API outlived its flow"
        [abandoned] = _runs(store, "RUNNING")
    finally:
        cleanup(proc)
    again = shopfloor(*args, cwd=tmp_path)
    try:
        assert again.wait(timeout=600) == 0, again.stderr.read().decode()[-2000:]
    finally:
        cleanup(again)
    assert _runs(store, "RUNNING") == []
    failed = mlflow.MlflowClient().get_run(abandoned.info.run_id)
    assert failed.info.status == "FAILED" and "process had died" in failed.data.tags["shopfloor.ended"]


def test_a_killed_edge_server_leaves_nothing_behind(tmp_path):
    """SIGKILL of `shopfloor edge serve`: the port is free and no process is left."""
    port = free_port()
    proc = shopfloor("edge", "serve", "--port", str(port), "--state", str(tmp_path / "edge"),
                     "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", cwd=tmp_path)  # fmt: skip
    try:
        wait_for(lambda: _listening(port), 120, "the edge server")
        children = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert all_gone(children) and not _listening(port)
    finally:
        cleanup(proc)
