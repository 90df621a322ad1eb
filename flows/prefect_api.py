"""The temporary Prefect API a flow run needs when no Prefect server is configured.

Prefect starts one itself when PREFECT_API_URL is unset, but as a plain child process: killing the
flow (SIGKILL) left it running and listening. This starts the same server (Prefect's own app, the
same settings) through flows.processes, so it dies with its parent, and stops it when the flow is
done. With PREFECT_API_URL set (a team server), nothing is started.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from pathlib import Path

from flows.processes import start_child, stop_child


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, child, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the temporary Prefect API exited with code {child.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"the temporary Prefect API did not answer within {timeout_s:.0f} s")


@contextlib.contextmanager
def prefect_api():
    """Yield the API URL flows report to: the configured one, or a temporary local server."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    import prefect
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = _free_port()
    env = os.environ | {
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    args = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent), "--factory",
            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "error",
            "--lifespan", "on"]  # fmt: skip
    child = start_child(args, env)
    try:
        url = f"http://127.0.0.1:{port}/api"
        _wait_healthy(
            url, child, float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
        )
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        stop_child(child)
