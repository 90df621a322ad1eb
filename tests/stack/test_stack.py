"""The team stack for real: PostgreSQL, SeaweedFS, MLflow with auth, Prefect with an auth string, a
worker and the edge server, on loopback ports, started and stopped in a temporary folder."""

from __future__ import annotations

import base64
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stack import postgres
from stack.services import running_pid
from stack.team import Stack, StackConfig, down, status, up

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    team = Stack.open(StackConfig(root=reachable(tmp_path_factory.mktemp("stack"))))
    try:
        up(team, report=lambda _line: None)
        yield team
    finally:
        down(team, report=lambda _line: None)


def reachable(root: Path) -> Path:
    """pytest's folders are private to root; the postgres user must pass through them (as under /srv)."""
    for folder in [root, *root.parents][:-2]:  # up to, not including, /tmp and /
        folder.chmod(folder.stat().st_mode | 0o001)
    return root


def groups_alive(team: Stack) -> list[str]:
    alive = []
    for name in ("postgres", "s3", "mlflow", "prefect", "worker", "edge"):
        pid = team.paths.pidfile(name)
        if pid.exists() and running_pid(team.paths, name) is not None:
            alive.append(name)
    return alive


def http_status(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code


def test_a_run_logged_by_a_client_lands_in_postgresql_and_the_object_store(stack, tmp_path):
    assert all(healthy for _, healthy, _ in status(stack).values())
    env = os.environ | stack.client_env()
    env.pop("AWS_ACCESS_KEY_ID"), env.pop("AWS_SECRET_ACCESS_KEY")  # artifacts go through MLflow, not S3 keys
    code = ("import mlflow; mlflow.set_experiment('team'); r = mlflow.start_run(); mlflow.log_metric('f1', 0.5); "
            "mlflow.log_text('hello', 'note.txt'); mlflow.end_run(); print(r.info.run_id)")  # fmt: skip
    run = subprocess.run(
        [str(stack_python()), "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    run_id = run.stdout.strip().splitlines()[-1]
    rows = subprocess.run([str(postgres.binaries() / "psql"), stack.db("psycopg2", "mlflow").replace("+psycopg2", ""),
                           "-Atc", f"SELECT status FROM runs WHERE run_uuid = '{run_id}'"], capture_output=True, text=True)  # fmt: skip
    assert rows.stdout.strip() == "FINISHED", rows.stderr
    import boto3

    s3 = boto3.client("s3", endpoint_url=stack.url("s3"), aws_access_key_id=stack.secrets["s3_access_key"],
                      aws_secret_access_key=stack.secrets["s3_secret_key"], region_name="us-east-1")  # fmt: skip
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow").get("Contents", [])]
    assert any(key.endswith(f"{run_id}/artifacts/note.txt") for key in keys), keys


def test_wrong_credentials_are_refused_by_every_service(stack):
    import boto3
    from botocore.exceptions import ClientError

    wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:not-the-password").decode()}
    assert http_status(f"{stack.url('mlflow')}/api/2.0/mlflow/experiments/search?max_results=1", wrong) == 401
    assert http_status(f"{stack.url('mlflow')}/api/2.0/mlflow/experiments/search?max_results=1", {}) == 401
    assert http_status(f"{stack.url('prefect')}/api/flows/filter", wrong) == 401
    s3 = boto3.client("s3", endpoint_url=stack.url("s3"), aws_access_key_id=stack.secrets["s3_access_key"],
                      aws_secret_access_key="wrong-secret", region_name="us-east-1")  # fmt: skip
    with pytest.raises(ClientError, match="SignatureDoesNotMatch|AccessDenied"):
        s3.list_objects_v2(Bucket="mlflow")
    right = {
        "Authorization": "Basic " + base64.b64encode(stack.secrets["prefect_auth_string"].encode()).decode()
    }
    assert http_status(f"{stack.url('prefect')}/api/health", right) == 200


def test_down_stops_every_process_group_and_twice_is_safe(tmp_path):
    team = Stack.open(StackConfig(root=reachable(tmp_path) / "stack"))
    up(team, report=lambda _line: None)
    pids = {name: running_pid(team.paths, name) for name in ("postgres", "mlflow", "worker")}
    assert all(pids.values())
    assert set(down(team, report=lambda _line: None)) == {
        "postgres",
        "s3",
        "mlflow",
        "prefect",
        "worker",
        "edge",
    }
    assert groups_alive(team) == [] and down(team, report=lambda _line: None) == []
    assert [p for pid in pids.values() for p in live_members(pid)] == []  # workers, job consumers, flow runs


def live_members(group: int) -> list[int]:
    """Processes of process group `group` that still run (zombies, dead but not yet reaped, do not count)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


def stack_python():
    from stack.team import BIN

    return BIN / "python"
