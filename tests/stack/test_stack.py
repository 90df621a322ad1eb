"""The team stack for real: PostgreSQL, SeaweedFS, MLflow with auth, Prefect with an auth string, a
worker and the edge server, on loopback ports, started and stopped in a temporary folder."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stack import postgres
from stack.services import live, proc_stat, running_pid
from stack.team import Stack, StackConfig, down, status, up

pytestmark = [pytest.mark.stack, pytest.mark.slow]
TEST_HEARTBEAT_S = 30  # Prefect's least (FlowsSettings.heartbeat_frequency >= 30)


@pytest.fixture(scope="module")
def stack():
    with reachable() as root:
        team = Stack.open(StackConfig(root=root, heartbeat_s=TEST_HEARTBEAT_S))
        try:
            up(team, report=lambda _line: None)
            yield team
        finally:
            down(team, report=lambda _line: None)


@contextmanager
def reachable() -> Iterator[Path]:
    """A folder the postgres user can pass through (as /srv would be), outside pytest's: every pytest
    session that starts (another test run on this machine) resets pytest-of-<user> to 0700, and then
    PostgreSQL, running as postgres, loses its data folder (its next checkpoint PANICs, a restart fails)."""
    root = Path(tempfile.mkdtemp(prefix="shopfloor-stack-"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


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


def test_down_stops_every_process_group_and_twice_is_safe():
    with reachable() as root:
        team = Stack.open(StackConfig(root=root, heartbeat_s=TEST_HEARTBEAT_S))
        try:
            stops_everything(team)
        finally:
            down(team, report=lambda _line: None)  # when an assertion failed midway


def stops_everything(team: Stack) -> None:
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
    return [int(f.name) for f in Path("/proc").glob("[0-9]*")
            if (fields := proc_stat(f.name)) is not None and int(fields[2]) == group and live(f.name)]  # fmt: skip


def stack_python():
    from stack.team import BIN

    return BIN / "python"


TINY = [
    "fit.epochs=1", "fit.warmup_epochs=1", "fit.samples_per_epoch=32", "fit.batch_size=16", "model.image_size=64",
    "split.test_fraction=0.25", "split.val_fraction=0.25", "checks.rules.min_per_class=5",
    "promotion.min_macro_f1=0", "promotion.min_class_recall=0", "promotion.max_int8_macro_f1_drop=1",
    "promotion.min_top1_agreement=0", "promotion.max_latency_ms_p95=100000",
    "promotion.min_defect_recall=0", "promotion.max_false_reject_rate=1",
]  # fmt: skip


def on_stack(stack: Stack, code: str, timeout_s: float = 900) -> str:
    """Run `code` in a client process with the stack's settings (as after `eval "$(shopfloor stack env)"`)."""
    env = os.environ | stack.client_env() | {"PREFECT_HOME": str(stack.paths.data("prefect"))}
    done = subprocess.run(
        [str(stack_python()), "-c", code], env=env, capture_output=True, text=True, timeout=timeout_s
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def pushed(stack: Stack, data: Path, checkout: Path) -> str:
    """Track `data` with DVC in a new checkout and push it to the stack's remote; its data version."""
    from stack import dvc_remote

    checkout.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=checkout, check=True)
    dvc(checkout, "init", "-q")
    dvc_remote.configure(
        checkout, stack.url("s3"), stack.secrets["s3_access_key"], stack.secrets["s3_secret_key"]
    )
    data.rename(checkout / data.name)
    dvc(checkout, "add", "-q", data.name)
    dvc(checkout, "push", "-q")
    recorded = (checkout / f"{data.name}.dvc").read_text().splitlines()
    return next(line.split()[-1] for line in recorded if "md5:" in line)


def test_a_training_submitted_as_a_deployment_runs_on_the_worker_and_reaches_a_device(
    stack, tile_subset, tmp_path
):
    """Asked for a data version (a DVC hash) the worker has never seen: it pulls exactly that version from
    the stack's DVC remote, trains, and the registered version carries the hash."""
    import json

    from data_checks.versioning import dvc_data_version
    from device.client import EdgeClient
    from edge.devices import DeviceStore

    version = pushed(stack, tile_subset, tmp_path / "checkout")
    assert version == dvc_data_version(tmp_path / "checkout" / "tiles") and version.endswith(".dir")
    overrides = TINY + [f"tracking.tracking_uri={stack.url('mlflow')}", f"work_dir={tmp_path}/runs", f"split.frozen_test_dir={tmp_path}/frozen",
                        f"checks.quarantine_dir={tmp_path}/q", f"checks.cache_dir={tmp_path}/cache"]  # fmt: skip
    code = ("import json; from prefect.deployments import run_deployment; "
            f"run = run_deployment('train-defect-classifier/team', parameters={{'data': 'tiles', 'data_version': {version!r}, 'overrides': {overrides!r}}}, timeout=900); "
            "print(json.dumps([run.state_type.value, str(run.id)]))")  # fmt: skip
    state, _ = json.loads(on_stack(stack, code))
    assert state == "COMPLETED", stack.paths.log("worker").read_text()[-3000:]
    versions = on_stack(stack, "import json, mlflow; c = mlflow.MlflowClient(); v = c.get_model_version_by_alias('defect-classifier', 'champion'); "
                               "print(json.dumps([v.version, c.get_run(v.run_id).info.status, v.tags['dvc_data_version'], c.get_run(v.run_id).data.tags['dvc_data_version']]))")  # fmt: skip
    assert json.loads(versions) == ["1", "FINISHED", version, version]
    pulled = tmp_path / "cache" / "data-versions" / version.removesuffix(".dir") / "tiles"
    assert dvc_data_version(pulled) == version  # the worker's copy: exactly the pushed files
    token = DeviceStore(stack.paths.data("edge") / "devices.db").enroll("cam-team")
    client = EdgeClient(
        stack.url("edge"),
        token,
        (stack.paths.data("edge") / "keys" / "public_key.pem").read_bytes(),
        tmp_path / "device",
    )
    try:
        pulled = client.pull("defect-classifier")
    finally:
        client.close()
    assert pulled.version == "1" and pulled.path.stat().st_size > 1_000_000


def test_a_drift_event_on_the_stack_starts_the_retraining_deployment(stack):
    """The automation made with each deployment turns `shopfloor.drift.detected` of its model into a
    flow run: the vibration model's, and the tile line's image anomaly model's."""
    import json

    code = """
import json, sys, time, anyio
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter
from prefect.events import emit_event
from prefect.states import Cancelled

async def main(name, model, device):
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(name)
        before = {r.id for r in await client.read_flow_runs(deployment_filter=DeploymentFilter(id={'any_': [deployment.id]}))}
        emitted = time.monotonic()
        emit_event(event='shopfloor.drift.detected', resource={'prefect.resource.id': f'shopfloor.device.{device}',
                   'shopfloor.model': model, 'shopfloor.version': '1', 'shopfloor.line': 'line-1'},
                   payload={'device': device, 'model': model, 'version': '1'})
        while time.monotonic() - emitted < 120:
            runs = [r for r in await client.read_flow_runs(deployment_filter=DeploymentFilter(id={'any_': [deployment.id]}))
                    if r.id not in before]
            if runs:
                seconds = time.monotonic() - emitted
                await client.set_flow_run_state(runs[0].id, Cancelled(), force=True)
                return {'seconds': round(seconds, 1), 'device': runs[0].parameters.get('device')}
            await anyio.sleep(0.5)
        return {'seconds': None}

print(json.dumps([anyio.run(main, 'retrain-anomaly-model/team', 'bearing-anomaly', 'motor-z'),
                  anyio.run(main, 'train-image-anomaly/team', 'magnetic_tiles-anomaly', 'camera-z')]))
"""
    vibration, images = json.loads(on_stack(stack, code, timeout_s=300))
    print(
        f"drift event -> retraining run created: {vibration['seconds']} s (vibration), {images['seconds']} s (images)"
    )
    assert vibration["device"] == "motor-z" and vibration["seconds"] is not None
    assert images["device"] == "camera-z" and images["seconds"] is not None


def test_train_remote_submits_to_the_worker_with_the_teams_tracking(stack, tile_subset):
    import json

    env = os.environ | stack.client_env() | {"PREFECT_HOME": str(stack.paths.data("prefect"))}
    shopfloor = stack_python().parent / "shopfloor"
    sent = subprocess.run([str(shopfloor), "train", "defects", "--remote", "--data", str(tile_subset), "--set", "fit.epochs=1", "--set", f"split.frozen_test_dir={tile_subset.parent}/frozen"],
                          env=env | {"COLUMNS": "300"}, capture_output=True, text=True, timeout=300)  # fmt: skip
    said = sent.stdout + sent.stderr  # the CLI's messages go to stderr
    assert sent.returncode == 0 and "submitted train-defect-classifier" in said, said[-2000:]
    run_id = said.split("flow run ")[1].split(";")[0]
    code = f"""
import json
from prefect.client.orchestration import get_client
from prefect.states import Cancelled
with get_client(sync_client=True) as client:
    run = client.read_flow_run({run_id!r})
    client.set_flow_run_state(run.id, Cancelled(), force=True)
    print(json.dumps(run.parameters))
"""
    parameters = json.loads(on_stack(stack, code))
    assert parameters["data"] == str(tile_subset.resolve())
    assert parameters["overrides"][:2] == [f"tracking.tracking_uri={stack.url('mlflow')}", "fit.epochs=1"]


def test_train_remote_with_a_data_version_submits_the_hash_or_refuses_one_the_remote_lacks(
    stack, tile_subset, tmp_path
):
    import json

    version = pushed(stack, tile_subset, tmp_path / "checkout")
    env = (
        os.environ | stack.client_env() | {"PREFECT_HOME": str(stack.paths.data("prefect")), "COLUMNS": "400"}
    )
    train = [str(stack_python().parent / "shopfloor"), "train", "defects", "--remote", "--data", "tiles"]
    train += [
        "--set",
        f"checks.cache_dir={tmp_path}/cache",
        "--set",
        f"work_dir={tmp_path}/runs",
    ]  # not the checkout's
    unknown = "0123456789abcdef0123456789abcdef.dir"
    refused = subprocess.run(
        train + ["--data-version", unknown], env=env, capture_output=True, text=True, timeout=300
    )
    said = (refused.stdout + refused.stderr).strip()
    assert refused.returncode == 2 and f"{unknown} is not (completely) in the DVC remote 'team'" in said, (
        said[-1500:]
    )
    assert "dvc push" in said and len([line for line in said.splitlines() if "error:" in line]) == 1
    sent = subprocess.run(
        train + ["--data-version", version], env=env, capture_output=True, text=True, timeout=300
    )
    said = sent.stdout + sent.stderr
    assert sent.returncode == 0 and "submitted train-defect-classifier" in said, said[-2000:]
    run_id = said.split("flow run ")[1].split(";")[0]
    code = f"""
import json
from prefect.client.orchestration import get_client
from prefect.states import Cancelled
with get_client(sync_client=True) as client:
    run = client.read_flow_run({run_id!r})
    client.set_flow_run_state(run.id, Cancelled(), force=True)
    print(json.dumps(run.parameters))
"""
    parameters = json.loads(on_stack(stack, code))
    assert parameters["data"] == "tiles" and parameters["data_version"] == version


def test_a_worker_killed_mid_run_changes_no_model_and_the_next_run_works(stack, tile_subset, tmp_path):
    """SIGKILL to the worker's process group (a machine losing power looks the same to the stack) while
    a training runs: no version is registered and the champion stays; a restarted worker runs the next."""
    import json
    import signal
    import time

    from stack.services import kill_tree, start

    versions = ("import mlflow; found = mlflow.MlflowClient().search_model_versions(\"name = 'defect-classifier'\"); "
                "print(sorted(int(v.version) for v in found))")  # fmt: skip
    before = on_stack(stack, versions)
    overrides = TINY + [
        f"work_dir={tmp_path}/runs",
        f"split.frozen_test_dir={tmp_path}/frozen",
        f"checks.quarantine_dir={tmp_path}/q",
        f"checks.cache_dir={tmp_path}/cache",
    ]
    code = f"""
import time
from flows.deploy import submit
from prefect.client.orchestration import get_client
run_id, _ = submit('train-defect-classifier', {{'data': {str(tile_subset)!r}, 'overrides': {overrides!r}}})
with get_client(sync_client=True) as client:
    while client.read_flow_run(run_id).state_type.value != 'RUNNING':
        time.sleep(0.5)
print(run_id)
"""
    run_id = on_stack(stack, code)
    time.sleep(5)  # into the data checks
    worker = running_pid(stack.paths, "worker")
    kill_tree(worker, signal.SIGKILL)  # the worker and its flow runs, as when its machine dies
    while running_pid(stack.paths, "worker") is not None:
        time.sleep(0.2)
    for _ in range(50):  # SIGKILLed processes are gone within moments
        if not processes_of_run(run_id):
            break
        time.sleep(0.2)
    assert processes_of_run(run_id) == []
    assert on_stack(stack, versions) == before
    start(stack.paths, next(s for s in stack.services() if s.name == "worker"))
    code = ("import json; from prefect.deployments import run_deployment; "
            "run = run_deployment('monitor-drift/team', timeout=600); print(json.dumps(run.state_type.value))")  # fmt: skip
    assert json.loads(on_stack(stack, code)) == "COMPLETED"
    print(f"killed run {run_id}; versions before and after: {before}")
    # No worker is left to say the killed run ended. Its heartbeats stop, and the stack's automation
    # marks it CRASHED after three missed ones (it used to stay RUNNING, holding the training
    # deployment's one slot and cancelling every later training until an operator stepped in).
    crashed = f"""
import json, time
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as client:
    deadline = time.monotonic() + {3 * TEST_HEARTBEAT_S + 120}
    while (run := client.read_flow_run({run_id!r})).state_type.value != 'CRASHED' and time.monotonic() < deadline:
        time.sleep(2)
    limit = client.read_deployment(run.deployment_id).global_concurrency_limit
    print(json.dumps([run.state_type.value, run.state.message, limit.active_slots]))
"""
    state, message, slots = json.loads(on_stack(stack, crashed))
    assert (state, slots) == ("CRASHED", 0) and "no heartbeat" in message


def processes_of_run(run_id: str) -> list[int]:
    """Live processes whose environment names this flow run (Prefect sets PREFECT__FLOW_RUN_ID)."""
    found, marker = [], f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    for folder in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (folder / "environ").read_bytes() and live(folder.name):
                found.append(int(folder.name))
        except OSError:
            continue
    return found


def test_a_client_with_wrong_credentials_gets_one_line_naming_the_setting(stack, tile_subset):
    """Findings: a wrong MLflow password or Prefect auth string ended in "unexpected error" (exit 1)."""
    env = (
        os.environ | stack.client_env() | {"PREFECT_HOME": str(stack.paths.data("prefect")), "COLUMNS": "400"}
    )
    shopfloor = str(stack_python().parent / "shopfloor")
    cases = {
        "MLFLOW_TRACKING_PASSWORD": ([shopfloor, "registry", "list", "defect-classifier"], "wrong"),
        "PREFECT_API_AUTH_STRING": ([shopfloor, "train", "defects", "--remote", "--data", str(tile_subset)], "shopfloor:wrong"),
    }  # fmt: skip
    for setting, (args, value) in cases.items():
        out = subprocess.run(args, env=env | {setting: value}, capture_output=True, text=True, timeout=300)
        said = (out.stdout + out.stderr).strip()
        assert out.returncode == 2 and setting in said and "Traceback" not in said, said[-1500:]
        assert len([line for line in said.splitlines() if "error:" in line]) == 1


def dvc(repo: Path, *args: str) -> str:
    done = subprocess.run(
        [str(stack_python()), "-m", "dvc", *args], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (args, done.stderr[-1500:])
    return done.stdout


def test_data_pushed_with_dvc_to_the_stack_comes_back_on_another_checkout(stack, tmp_path):
    from stack import dvc_remote

    here, there = tmp_path / "here", tmp_path / "there"
    for repo in (here, there):
        repo.mkdir()
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        dvc(repo, "init", "-q")
        dvc_remote.configure(
            repo, stack.url("s3"), stack.secrets["s3_access_key"], stack.secrets["s3_secret_key"]
        )
    (here / "tiles.txt").write_text("a data version\n" * 1000)
    dvc(here, "add", "tiles.txt")
    dvc(here, "push")
    (there / "tiles.txt.dvc").write_text((here / "tiles.txt.dvc").read_text())  # what git would carry
    dvc(there, "pull")
    assert (there / "tiles.txt").read_text() == (here / "tiles.txt").read_text()
    assert "secret_access_key" not in (here / ".dvc" / "config").read_text()  # keys stay out of git


def final_state(stack: Stack, run_id: str, timeout_s: float = 600) -> tuple[str, str | None]:
    """The flow run's final state type and message, once it has one."""
    import json

    code = f"""
import json, time
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as client:
    deadline = time.monotonic() + {timeout_s}
    while not (run := client.read_flow_run({run_id!r})).state.is_final() and time.monotonic() < deadline:
        time.sleep(1)
    print(json.dumps([run.state_type.value, run.state.message]))
"""
    return tuple(json.loads(on_stack(stack, code, timeout_s + 120)))


def test_an_embedded_store_moves_into_the_stack_with_its_history(stack, tmp_path):
    import json

    from mlflow import MlflowClient

    source = f"sqlite:///{tmp_path}/mlflow.db"
    src = MlflowClient(source)
    experiment = src.create_experiment("defects", artifact_location=str(tmp_path / "artifacts"))
    run = src.create_run(experiment, run_name="first")
    src.log_param(run.info.run_id, "fit.epochs", "12")
    for step, value in enumerate((0.4, 0.6)):
        src.log_metric(run.info.run_id, "val_macro_f1", value, step=step)
    src.log_text(run.info.run_id, "onnx bytes", "export/model.int8.onnx")
    src.set_terminated(run.info.run_id)
    src.create_registered_model("tiles-import", description="imported")
    for _ in range(3):
        src.create_model_version("tiles-import", f"{run.info.artifact_uri}/export", run_id=run.info.run_id,
                                 tags={"gate": "passed"})  # fmt: skip
    src.delete_model_version("tiles-import", "2")
    src.set_registered_model_alias("tiles-import", "champion", "3")

    env = os.environ | stack.client_env() | {"COLUMNS": "300"}
    shopfloor = str(stack_python().parent / "shopfloor")
    done = subprocess.run([shopfloor, "stack", "import-store", source, "--root", str(stack.paths.root)], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    code = """
import json, mlflow
c = mlflow.MlflowClient()
versions = sorted(int(v.version) for v in c.search_model_versions("name = 'tiles-import'"))
champion = c.get_model_version_by_alias('tiles-import', 'champion')
history = [m.value for m in c.get_metric_history(champion.run_id, 'val_macro_f1')]
path = mlflow.artifacts.download_artifacts(f'models:/tiles-import/3')
print(json.dumps([versions, champion.version, champion.tags, history, sorted(__import__('os').listdir(path))]))
"""
    versions, champion, tags, history, files = json.loads(on_stack(stack, code))
    assert versions == [1, 3] and champion == "3" and tags == {"gate": "passed"}
    assert history == [0.4, 0.6] and files == ["model.int8.onnx"]
    again = subprocess.run([shopfloor, "stack", "import-store", source, "--root", str(stack.paths.root)], env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 2 and "already has versions of 'tiles-import'" in again.stdout + again.stderr


def test_postgresql_stopped_mid_run_fails_the_run_in_one_line_and_registers_nothing(
    stack, tile_subset, tmp_path
):
    """PostgreSQL (MLflow's and Prefect's database) stops while a training runs: the flow run fails within
    bounded retries with one line saying so, no version appears, and the stack works again once it is back."""
    import json
    import time

    from stack.services import start, stop

    versions = ("import mlflow; found = mlflow.MlflowClient().search_model_versions(\"name = 'defect-classifier'\"); "
                "print(sorted(int(v.version) for v in found))")  # fmt: skip
    before = on_stack(stack, versions)
    overrides = TINY + [f"work_dir={tmp_path}/runs", f"split.frozen_test_dir={tmp_path}/frozen",
                        f"checks.quarantine_dir={tmp_path}/q", f"checks.cache_dir={tmp_path}/cache"]  # fmt: skip
    code = f"""
import json, time, mlflow
from flows.deploy import submit
from prefect.client.orchestration import get_client
started = int(time.time() * 1000)
run_id, _ = submit('train-defect-classifier', {{'data': {str(tile_subset)!r}, 'overrides': {overrides!r}}})
runs = []
with get_client(sync_client=True) as client:
    while not runs:  # until the flow run has opened its MLflow run
        time.sleep(0.5)
        if (state := client.read_flow_run(run_id).state).is_final():
            raise SystemExit(f"flow run {{run_id}} ended {{state.type.value}} before its MLflow run: {{state.message}}")
        if experiment := mlflow.get_experiment_by_name('defect-classifier'):
            runs = mlflow.search_runs([experiment.experiment_id], output_format='list',
                                      filter_string=f"attributes.status = 'RUNNING' and attributes.start_time >= {{started}}")
print(json.dumps([run_id, runs[0].info.run_id]))
"""
    flow_run, mlflow_run = json.loads(on_stack(stack, code))
    log = stack.paths.log("worker")
    seen = len(log.read_bytes())
    stopped = time.monotonic()
    stop(stack.paths, "postgres")  # the flow run is inside its MLflow run now
    try:
        while "the tracking server's database is unavailable" not in log.read_bytes()[seen:].decode(
            errors="replace"
        ):
            assert time.monotonic() - stopped < 240, log.read_text()[-3000:]
            time.sleep(1)
        failed_after = time.monotonic() - stopped
    finally:
        start(stack.paths, next(s for s in stack.services() if s.name == "postgres"))
    state, message = final_state(stack, flow_run)
    print(f"PostgreSQL stopped: the flow said so after {failed_after:.0f} s; final state {state}: {message}")
    assert state == "FAILED" and failed_after < 120, message
    assert "the tracking server's database is unavailable (MLflow at" in message
    assert f"run {mlflow_run} failed and registered nothing; start PostgreSQL" in message
    assert on_stack(stack, versions) == before
    assert running_pid(stack.paths, "worker") is not None and all(
        healthy for _, healthy, _ in status(stack).values()
    )
