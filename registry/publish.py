"""Log a finished training run to MLflow and register its model as a new version.

What a reviewer finds in the MLflow UI: params (the resolved config), per-epoch metrics, test
macro-F1, balanced accuracy and per-class recall, the confusion matrix and per-class plots, the
augmentation preview, the data checks (Data Docs HTML, findings, quarantine, label review), the
dataset (fingerprint and DVC version), the git commit, and the model with signature and example.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.models import infer_signature

import data_checks
import training
from training.checkpoint import load_model
from training.model import ProbabilityModel

PIP_REQUIREMENTS = ["torch==2.14.1", "timm==1.0.31", "numpy"]  # skip MLflow's slow inference


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


def log_pytorch_model(model_path: Path, metadata: dict) -> str:
    """Log the classifier (softmax included) with signature and input example; returns its model URI."""
    model, payload = load_model(model_path)
    shipped = ProbabilityModel(model).eval()
    size = model.spec.image_size
    example = np.full((1, 1, size, size), 128.0, dtype=np.float32)  # a mid-grey image
    with torch.inference_mode():
        output = shipped(torch.from_numpy(example)).numpy()
    # Pickle, not pt2: pt2 traces the network and fixes the batch size of the example (1).
    # `code_paths` ships the two packages the pickle needs, so the model loads without shopfloor.
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # its generic pickle warning
    info = mlflow.pytorch.log_model(
        shipped,
        name="pytorch-model",
        signature=infer_signature(example, output),
        input_example=example,
        serialization_format="pickle",
        code_paths=[str(Path(training.__file__).parent), str(Path(data_checks.__file__).parent)],
        pip_requirements=PIP_REQUIREMENTS,
        metadata={"spec": model.spec.to_dict(), "decision": payload.get("decision"), **metadata},
    )
    mlflow.log_artifact(str(model_path), "checkpoint")
    return info.model_uri


def log_onnx_models(report) -> str:
    """Log fp32 and int8 ONNX as MLflow models with signature and card; returns the int8 model URI.

    The int8 file is what edge devices run, so it is the model that gets registered.
    """
    import onnx

    from registry.onnx_export import read_card

    card = read_card(report.int8_path)
    size = card["input"]["image_size"]
    example = np.full((1, 1, size, size), 128.0, dtype=np.float32)
    signature = infer_signature(example, np.zeros((1, len(card["classes"])), dtype=np.float32))
    uris = {}
    for name, path in (("onnx-fp32", report.fp32_path), ("edge-int8", report.int8_path)):
        info = mlflow.onnx.log_model(
            onnx.load(str(path)), name=name, signature=signature, input_example=example,
            onnx_execution_providers=["CPUExecutionProvider"], metadata={"card": card},
            save_as_external_data=False,  # one self-contained file: what the edge server streams
            pip_requirements=["onnxruntime==1.32.0", "onnx==1.23.2", "numpy"],
        )  # fmt: skip
        uris[name] = info.model_uri
    mlflow.log_artifact(str(report.card_path), "export")
    return uris["edge-int8"]


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
