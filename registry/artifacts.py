"""Fetch a registered version's ONNX file (the artefact devices run) from the MLflow registry."""

from __future__ import annotations

from pathlib import Path

import mlflow

from core.errors import RegistryError


def shipped_file(model: str, version: str, into: Path) -> Path:
    """Download a registered version's ONNX file."""
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{model}/{version}", dst_path=str(into)))
    return next(folder.rglob("*.onnx"))


def resolve_model(ref: str, dst: Path) -> Path:
    """An .onnx path as is; NAME@alias or NAME/version from the MLflow registry (downloaded to `dst`)."""
    if ref.endswith(".onnx"):
        if not Path(ref).is_file():
            raise RegistryError(f"model file {ref} does not exist")
        return Path(ref)
    if "@" not in ref and "/" not in ref:
        raise RegistryError(
            f"--model {ref!r}: expected NAME@alias (e.g. bearing-anomaly@champion), NAME/VERSION or a .onnx file"
        )
    try:
        folder = Path(mlflow.artifacts.download_artifacts(f"models:/{ref}", dst_path=str(dst)))
    except Exception as err:  # MlflowException: unknown name, alias or version
        raise RegistryError(
            f"no registered model {ref!r} in {mlflow.get_tracking_uri()}: {str(err).splitlines()[0]}. "
            "Train one with `shopfloor train anomaly`, or see `shopfloor registry list NAME`"
        ) from None
    found = sorted(folder.rglob("*.onnx"))
    if not found:
        raise RegistryError(f"{ref} has no ONNX file; was it registered by shopfloor?")
    return found[0]
