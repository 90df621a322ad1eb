"""Log a finished training run's files to MLflow and register its model as a new version (any kind).

Each kind logs its own model (registry.images, registry.vibration); what they share is here:
config flattening for params, files and folders as artifacts, and `register`, which makes every
new version a `candidate` and records the move.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model_uri: str


def flatten(prefix: str, value: object) -> dict[str, object]:
    """Nested config dict -> {"fit.epochs": 8, ...} for `mlflow.log_params`."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, inner in value.items():
            out |= flatten(f"{prefix}.{key}" if prefix else str(key), inner)
        return out
    return {prefix: value}


def log_directory(path: Path | None, artifact_path: str) -> None:
    if path is not None and Path(path).exists():
        mlflow.log_artifacts(str(path), artifact_path)


def log_files(files: dict[str, Path], artifact_path: str) -> None:
    for file in files.values():
        if file is not None and Path(file).exists():
            mlflow.log_artifact(str(file), artifact_path)


def register(model_uri: str, name: str, tags: dict[str, str]) -> RegisteredVersion:
    """A new registered version of `name` with lineage tags, aliased `candidate` (never `champion`).

    The `flow` tag, when present, is recorded as who moved the alias.
    """
    from registry.lifecycle import CANDIDATE, actor_name, move_alias

    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    move_alias(
        mlflow.MlflowClient(), name, CANDIDATE, str(version.version), actor_name(tags.get("flow")), "register"
    )
    return RegisteredVersion(name, str(version.version), version.run_id, model_uri)


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))
    return path
