"""Manual decisions from the CLI: approve a version for the edge, roll back, list, show history."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from core.errors import RegistryError
from registry.config import PromotionConfig
from registry.gates import GateReport
from registry.images import gate_version
from registry.lifecycle import AliasEvent, actor_name, promote, require_version

EXPORT_METRICS = ("int8_macro_f1_drop", "export_top1_agreement", "onnx_int8_latency_ms_p95")


def frozen_set_of(run_id: str) -> pd.DataFrame:
    """The frozen evaluation set a version was gated on (logged with its run)."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="promotion/frozen_eval.csv", dst_path=scratch
            )
        except Exception as err:  # MlflowException / OSError: the run predates frozen sets
            raise RegistryError(
                f"run {run_id} has no promotion/frozen_eval.csv to re-run the gate on"
            ) from err
        frozen = pd.read_csv(local)
    missing = [p for p in frozen["path"] if not Path(p).exists()]
    if missing:
        raise RegistryError(
            f"{len(missing)} frozen evaluation images are gone (e.g. {missing[0]}); restore the data to re-run the gate"
        )
    return frozen


def approve(
    cfg: PromotionConfig, model: str, version: str, override_reason: str | None = None
) -> tuple[GateReport, list[AliasEvent]]:
    """Re-run the gate on `version` now and promote it when it passes (or when overridden, with a reason)."""
    client = mlflow.MlflowClient()
    found = require_version(client, model, version)
    metrics = client.get_run(found.run_id).data.metrics
    missing = [k for k in EXPORT_METRICS if k not in metrics]
    if missing:
        raise RegistryError(
            f"{model} v{version} has no export measurements ({', '.join(missing)}); it cannot be gated"
        )
    report = gate_version(cfg, model, version, metrics, frozen_set_of(found.run_id))
    if not report.passed and override_reason is None:
        raise RegistryError(
            f"{model} v{version} fails the promotion gate:\n  "
            + "\n  ".join(report.failures())
            + "\nTo ship it anyway, pass --override-gates --reason '...' (recorded in the history)."
        )
    gate = report.to_dict() | ({"override_reason": override_reason} if override_reason else {})
    events = promote(client, model, version, actor_name(), gate)
    return report, events
