"""Log a finished training run's files to MLflow and register its model as a new version (any kind).

Each kind logs its own model (registry.images, registry.vibration); what they share is here:
config flattening for params, files and folders as artifacts, and `register`, which makes every
new version a `candidate` and records the move.

Registration is all or nothing: a flow registers inside its MLflow run and gates afterwards, and the run
ends FINISHED only when all of it was recorded. A version whose run ended otherwise (a crash, the
tracking database gone between `create_model_version` and the gate) is half-registered:
`remove_unfinished_versions` deletes it, on the spot when the flow fails, or at the next run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow

# what every logged ONNX model needs to be loaded by MLflow (pinned as the project pins them)
ONNX_PIP_REQUIREMENTS = ["onnxruntime==1.32.0", "onnx==1.23.2", "numpy"]


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


UNFINISHED_TAG = "shopfloor.removed_version"


def remove_unfinished_versions(client: mlflow.MlflowClient, run_ids: list[str]) -> list[str]:
    """Delete the versions registered by these runs when the run did not finish (FAILED, KILLED): their
    tags, alias or gate were never all recorded. A version that reached devices' view (an approval
    record, `champion` or `previous-champion`) stays: only its run's end failed. Each removal is said
    on its run (tag `shopfloor.removed_version`) and the `candidate` move in the alias history.
    Returns `name vN` for each version removed."""
    from registry.lifecycle import CANDIDATE, CHAMPION, PREVIOUS, approval_of, move_alias

    removed = []
    for start in range(0, len(run_ids), 100):  # keeps the filter string short
        quoted = ", ".join(f"'{run_id}'" for run_id in run_ids[start : start + 100])
        for found in client.search_model_versions(f"run_id IN ({quoted})"):
            if client.get_run(found.run_id).info.status in ("FINISHED", "RUNNING", "SCHEDULED"):
                continue
            # with its aliases, which the search leaves out
            version = client.get_model_version(found.name, found.version)
            if approval_of(version.tags) or {CHAMPION, PREVIOUS} & set(version.aliases):
                continue
            if CANDIDATE in version.aliases:
                move_alias(client, version.name, CANDIDATE, None, "shopfloor", "remove-unfinished")
            client.delete_model_version(version.name, version.version)
            said = f"{version.name} v{version.version}: its run ended before the version was gated"
            client.set_tag(version.run_id, UNFINISHED_TAG, said)
            removed.append(f"{version.name} v{version.version}")
    return removed
