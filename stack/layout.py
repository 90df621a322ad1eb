"""Where the stack keeps everything (one folder), and the secrets and ports chosen at the first `up`.

<root>/secrets.json     passwords and keys, mode 0600 (made once; `shopfloor stack env` prints them)
<root>/ports.json       the loopback ports picked at the first `up` and kept, so clients keep working
<root>/run/<name>.pid   one pidfile per service (the pid is also its process group)
<root>/logs/<name>.log  each service's output
<root>/postgres, s3, prefect, edge   each service's data
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

SERVICES = ("postgres", "s3", "mlflow", "prefect", "worker", "edge")  # start order; stop in reverse
PORTED = ("postgres", "s3", "mlflow", "prefect", "edge")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class StackPaths:
    root: Path

    def pidfile(self, service: str) -> Path:
        return self.root / "run" / f"{service}.pid"

    def log(self, service: str) -> Path:
        return self.root / "logs" / f"{service}.log"

    def data(self, service: str) -> Path:
        return self.root / service


def write_private(path: Path, text: str) -> None:
    """Write a file that holds secrets: mode 0600 from its first byte, not chmod'ed afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(text)


def _kept(path: Path, make) -> dict:
    """A JSON file written once (0600) and read back ever after."""
    if not path.exists():
        write_private(path, json.dumps(make(), indent=2))
    return json.loads(path.read_text())


def stack_secrets(paths: StackPaths) -> dict[str, str]:
    def make() -> dict[str, str]:
        token = lambda: secrets.token_urlsafe(24)  # noqa: E731
        return {"postgres_password": token(), "s3_access_key": "shopfloor", "s3_secret_key": token(),
                "mlflow_admin_password": token(), "mlflow_flask_secret": token(),
                "prefect_auth_string": f"shopfloor:{token()}"}  # fmt: skip

    return _kept(paths.root / "secrets.json", make)


def stack_ports(paths: StackPaths, host: str, wanted: dict[str, int]) -> dict[str, int]:
    """`wanted` ports where given (non-zero), else free ones chosen now and kept for later `up`s."""
    return _kept(paths.root / "ports.json", lambda: {s: wanted.get(s) or free_port(host) for s in PORTED})
