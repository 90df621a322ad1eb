"""Where runs and models are recorded: an MLflow tracking store, SQLite in the working folder by default.

`sqlite:///mlflow.db` needs no server; point `tracking_uri` at `postgresql://...` for a shared
store. Nothing here runs at import time: callers pass a `TrackingConfig`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from registry.config import TrackingConfig  # noqa: F401  (re-exported: the stage and its settings)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow  # noqa: E402  (must follow MLFLOW_DISABLE_TELEMETRY)


def configure(cfg: TrackingConfig) -> mlflow.MlflowClient:
    """Point MLflow at the store and experiment; quiet the store's own INFO lines."""
    import logging

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_experiment(cfg.experiment)
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
