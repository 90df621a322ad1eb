"""Registration is all or nothing: a version whose run failed before its gate is removed (on the spot, or
by the next run when the tracking server was what failed); a tracking server that does not answer is one
line that says what to do. Real stores only: SQLite here, the team stack's PostgreSQL in tests/stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import mlflow
import pytest

from core.errors import RegistryError
from registry import publish
from registry.lifecycle import CANDIDATE, CHAMPION, alias_version, history, record_approval
from registry.tracking import (
    TrackingUnavailable,
    configure,
    fail_abandoned_runs,
    process_tags,
    tracked_run,
    unavailable,
)
from stack.layout import free_port


def logged_model_uri() -> str:
    """A model folder in the active run (an MLmodel file is what makes it one to the registry)."""
    mlflow.log_text("flavors: {}\n", "model/MLmodel")
    return f"runs:/{mlflow.active_run().info.run_id}/model"


def test_a_run_failing_after_registration_leaves_no_version(registry_store):
    _, client = registry_store
    with pytest.raises(RuntimeError, match="gate crashed"), tracked_run(mlflow.start_run) as run:
        version = publish.register(logged_model_uri(), "tiles", {"flow": "test"})
        assert alias_version(client, "tiles", CANDIDATE) == version.version
        raise RuntimeError("gate crashed")  # after create_model_version, before the gate
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    assert client.search_model_versions("name = 'tiles'") == []
    assert "before the version was gated" in client.get_run(run.info.run_id).data.tags[publish.UNFINISHED_TAG]
    moves = [(e.alias, e.from_version, e.to_version) for e in history(client, "tiles")]
    assert moves == [(CANDIDATE, None, "1"), (CANDIDATE, "1", None)]  # the history says it went


def dead_pid() -> str:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return str(child.pid)


def test_the_next_run_removes_what_a_dead_run_half_registered_and_keeps_what_was_approved(registry_store):
    cfg, client = registry_store
    experiment = mlflow.get_experiment_by_name(cfg.experiment).experiment_id
    with mlflow.start_run() as approved:  # its end failed after the version was gated and approved
        kept = publish.register(logged_model_uri(), "tiles", {"flow": "test"})
        record_approval(client, "tiles", kept.version, "flow:test", "gate")
    client.set_terminated(approved.info.run_id, "FAILED")
    with mlflow.start_run(tags=process_tags() | {"shopfloor.pid": dead_pid()}) as crashed:
        half = publish.register(logged_model_uri(), "tiles", {"flow": "test"})
        mlflow.active_run()  # the process "dies" here: the run stays RUNNING, the version ungated
    client.update_run(crashed.info.run_id, "RUNNING")
    assert client.get_run(crashed.info.run_id).info.status == "RUNNING"

    assert fail_abandoned_runs(client, experiment) == [crashed.info.run_id]
    left = {str(v.version) for v in client.search_model_versions("name = 'tiles'")}
    assert left == {kept.version} and half.version not in left
    assert (
        alias_version(client, "tiles", CANDIDATE) is None and alias_version(client, "tiles", CHAMPION) is None
    )
    assert fail_abandoned_runs(client, experiment) == []  # nothing more to do, and no error


def test_an_unreachable_tracking_server_is_one_line_that_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a value the user set wins over the bounds
    port = free_port()
    cfg = publish_config(f"http://127.0.0.1:{port}")
    with pytest.raises(TrackingUnavailable) as refused:
        configure(cfg)
    said = str(refused.value)
    assert said.startswith(f"the tracking server at http://127.0.0.1:{port} refused the connection")
    assert "nothing was started" in said and "shopfloor stack up" in said and "\n" not in said
    assert isinstance(refused.value, RegistryError)  # the CLI's one-line path (exit 2)
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "30"  # the flow's bounds, where the user set none
    assert unavailable(RuntimeError("API request to http://x/api/2.0/mlflow/runs/get failed")) is None


def test_the_cli_says_the_same_line_for_any_command(tmp_path):
    env = os.environ | {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "COLUMNS": "300"}
    port = free_port()
    out = subprocess.run([sys.executable, "-m", "flows.cli.main", "registry", "list", "tiles",
                          "--tracking-uri", f"http://127.0.0.1:{port}"],
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    said = (out.stdout + out.stderr).strip()
    assert out.returncode == 2 and "Traceback" not in said, said[-2000:]
    assert f"the tracking server at http://127.0.0.1:{port} refused the connection" in said
    assert out.returncode != -signal.SIGKILL


def publish_config(uri: str):
    from registry.config import TrackingConfig

    return TrackingConfig(tracking_uri=uri, experiment="tests", model_name="tiles")
