"""Where runs and models are recorded: an MLflow tracking store, SQLite in the working folder by default.

`sqlite:///mlflow.db` needs no server; point `tracking_uri` at `postgresql://...` for a shared
store. Nothing here runs at import time: callers pass a `TrackingConfig`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from registry.config import TrackingConfig  # noqa: F401  (re-exported: the stage and its settings)
from registry.store import follow_moves

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow  # noqa: E402  (must follow MLFLOW_DISABLE_TELEMETRY)


def configure(cfg: TrackingConfig) -> mlflow.MlflowClient:
    """Point MLflow at the store and experiment; quiet the store's own INFO lines."""
    import logging

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_experiment(cfg.experiment)
    follow_moves(cfg.tracking_uri)  # after set_experiment: a new store has its tables now
    return mlflow.MlflowClient(cfg.tracking_uri)


def git_commit(repo: Path | None = None) -> str:
    """HEAD's sha of the code that runs (this checkout), `-dirty` when tracked files changed.

    `unknown` when shopfloor is installed outside a git checkout.
    """
    cwd = repo or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty.strip() else sha


def existing_store(tracking_uri: str) -> mlflow.MlflowClient:
    """A client on a store that must exist already: commands that only read never create one.

    (MLflow creates a SQLite file and its tables on first contact, and `set_experiment` creates an
    experiment: neither may happen because someone typed `registry list` in the wrong folder.)
    """
    from core.errors import RegistryError

    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise RegistryError(
                f"no tracking store at {path.resolve()}; run the command where `shopfloor train` ran, or pass --tracking-uri"
            )
    follow_moves(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.MlflowClient(tracking_uri)


def approved_version(tracking_uri: str, model: str, version: str):
    """The registered version, when it exists and has an approval record; RegistryError saying which is missing."""
    from core.errors import RegistryError
    from registry.lifecycle import approval_of, require_version

    found = require_version(existing_store(tracking_uri), model, version)
    if approval_of(found.tags) is None:
        raise RegistryError(
            f"{model} v{version} has no approval record (its gate failed or it was never judged); "
            f"see `shopfloor registry approve {model} {version}`"
        )
    return found


def process_tags() -> dict[str, str]:
    """Which process runs a flow: lets a later run tell a crashed run from one still going."""
    import socket

    return {"shopfloor.host": socket.gethostname(), "shopfloor.pid": str(os.getpid())}


def _owner_alive(tags: dict[str, str], started_ms: int) -> bool:
    import psutil

    try:
        process = psutil.Process(int(tags["shopfloor.pid"]))
        return process.create_time() * 1000 <= started_ms + 1000  # not a new process that reused the pid
    except (psutil.NoSuchProcess, ValueError):
        return False


def fail_abandoned_runs(
    client: mlflow.MlflowClient, experiment_id: str, keep: str | None = None
) -> list[str]:
    """Mark FAILED the runs of this experiment left RUNNING by a process of this host that is gone
    (killed, or its machine restarted): a run must never look like it is still going. `keep`: a
    run about to be resumed. Runs of other hosts, or without a recorded process, are left alone."""
    import socket

    host, ended = socket.gethostname(), []
    for run in client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    ):
        tags = run.data.tags
        if run.info.run_id == keep or tags.get("shopfloor.host") != host or "shopfloor.pid" not in tags:
            continue
        if not _owner_alive(tags, run.info.start_time):
            client.set_tag(
                run.info.run_id, "shopfloor.ended", "marked FAILED by a later run: its process had died"
            )
            client.set_terminated(run.info.run_id, status="FAILED")
            ended.append(run.info.run_id)
    return ended
