"""The temporary Prefect API a flow run needs when no Prefect server is configured.

Prefect starts one itself when PREFECT_API_URL is unset, but as a plain child process: killing the
flow (SIGKILL) left it running and listening. This starts the same server (Prefect's own app, the
same settings) through flows.processes, so it dies with its parent, and stops it when the flow is
done. With PREFECT_API_URL set (a team server), nothing is started.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from flows.processes import free_port, start_child, stop_child


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


def start_prefect_server(full: bool = False, env: dict[str, str] | None = None):
    """Start a Prefect API on a free loopback port as a child (flows.processes); returns (child, URL)
    once it answers. `full`: every service (the scheduler too) and the UI, as `prefect server start`;
    otherwise only those a single flow run uses (events and automations included)."""
    import prefect

    port = free_port()
    env = (env or dict(os.environ)) | {"PREFECT__SERVER_FINAL": "1"}
    if not full:
        env |= {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"}
    args = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent), "--factory",
            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "error",
            "--lifespan", "on"]  # fmt: skip
    child = start_child(args, env)
    url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_healthy(url, child, float(env.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")))
    except BaseException:
        stop_child(child)
        raise
    return child, url


@contextlib.contextmanager
def prefect_api(full: bool = False):
    """Yield the API URL flows report to: the configured one, or a temporary local server
    (`full`: with the scheduler, for serving deployments; see start_prefect_server)."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    child, url = start_prefect_server(full)
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _send_what_is_queued()
    finally:
        stop_child(child)


def _send_what_is_queued() -> None:
    """Logs and events still queued go to the server before it stops: sent at exit, they printed
    "--- Error logging to API --- All connection attempts failed" after a failed run's one line."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=5)
