"""Where each version's reference lives: logged with the version's run (monitoring/reference.json)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import mlflow

REFERENCE_ARTIFACT = "monitoring/reference.json"


def log_reference(client, model: str, version: str, reference: dict) -> None:
    """Log with the open run and point the version at it (tag `shopfloor.reference`)."""
    mlflow.log_dict(reference, REFERENCE_ARTIFACT)
    client.set_model_version_tag(model, version, "shopfloor.reference", REFERENCE_ARTIFACT)


def reference_loader(tracking_uri: str) -> Callable[[str, str], dict | None]:
    """`load(model, version)`: the version's reference, or None when it has none (cached per version)."""
    client, cache = mlflow.MlflowClient(tracking_uri), {}

    def load(model: str, version: str) -> dict | None:
        if (model, version) not in cache:
            cache[(model, version)] = None
            try:
                found = client.get_model_version(model, version)
                if found.tags.get("shopfloor.reference"):
                    with tempfile.TemporaryDirectory() as scratch:
                        local = mlflow.artifacts.download_artifacts(run_id=found.run_id, artifact_path=REFERENCE_ARTIFACT,
                                                                    dst_path=scratch, tracking_uri=tracking_uri)  # fmt: skip
                        cache[(model, version)] = json.loads(Path(local).read_text())
            except mlflow.exceptions.MlflowException:
                pass
        return cache[(model, version)]

    return load
