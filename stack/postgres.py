"""PostgreSQL from the Debian package, holding the MLflow, MLflow-auth and Prefect databases.

`initdb` and the server refuse to run as root, so under root both run as the `postgres` user (the
package creates it) and the data folder is handed to that user. The unix socket sits in the data's
own folder with trusted local access (only its owner can reach it); TCP on the stack's address
needs the `shopfloor` role's password (scram-sha-256).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from stack.layout import StackPaths
from stack.services import Service, StackError, as_user

DATABASES = ("mlflow", "mlflow_auth", "prefect")
ROLE = "shopfloor"


def binaries() -> Path:
    """The newest installed /usr/lib/postgresql/<version>/bin."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise StackError(
            "PostgreSQL is not installed: run `apt-get install postgresql` (Debian/Ubuntu), then `shopfloor stack up`"
        )
    return found[-1].parent


def _user() -> str | None:
    return "postgres" if os.geteuid() == 0 else None


def _own(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if _user():
        shutil.chown(path, "postgres", "postgres")


def init_cluster(paths: StackPaths) -> None:
    """Create the cluster once (a folder that has one is left alone)."""
    data, socket_dir = paths.data("postgres") / "data", paths.data("postgres") / "socket"
    if (data / "PG_VERSION").exists():
        return
    _own(paths.data("postgres"))
    _own(socket_dir)
    done = subprocess.run([str(binaries() / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
                           "--auth-local=trust", "--auth-host=scram-sha-256"],
                          capture_output=True, text=True, **as_user(_user()))  # fmt: skip
    if done.returncode:
        hint = (f"; as root, PostgreSQL runs as the user postgres, which must be able to reach {data.parent} "
                "(choose a --root outside /root, e.g. /srv/shopfloor-stack)") if _user() else ""  # fmt: skip
        raise StackError(
            f"initdb failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}{hint}"
        )


def service(paths: StackPaths, host: str, port: int) -> Service:
    data, socket_dir = paths.data("postgres") / "data", paths.data("postgres") / "socket"

    def healthy() -> bool:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return (socket_dir / f".s.PGSQL.{port}").exists()
        except OSError:
            return False

    args = [str(binaries() / "postgres"), "-D", str(data), "-p", str(port), "-k", str(socket_dir),
            "-c", f"listen_addresses={host}"]  # fmt: skip
    return Service("postgres", args, healthy=healthy, stop_signal=signal.SIGINT, user=_user())


def create_databases(paths: StackPaths, port: int, password: str) -> None:
    """The role and the three databases, each only if missing."""

    def sql(statement: str, database: str = "postgres") -> str:
        done = subprocess.run([str(binaries() / "psql"), "-h", str(paths.data("postgres") / "socket"), "-p", str(port),
                               "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", statement],
                              capture_output=True, text=True, **as_user(_user()))  # fmt: skip
        if done.returncode:
            raise StackError(f"PostgreSQL refused {statement.split()[0]}: {done.stderr.strip()[:300]}")
        return done.stdout.strip()

    if not sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'"):
        sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'")
    for name in DATABASES:
        if not sql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
            sql(f"CREATE DATABASE {name} OWNER {ROLE}")


def url(driver: str, host: str, port: int, password: str, database: str) -> str:
    """postgresql+psycopg2 for MLflow (plain postgresql:// wants psycopg 3), postgresql+asyncpg for Prefect."""
    return f"postgresql+{driver}://{ROLE}:{password}@{host}:{port}/{database}"
