"""Stage function `release`: judge a registered candidate with the promotion gate, then promote or not.

Called last by the flow and by the DVC `register` stage. Nothing here runs unless everything
before it succeeded, so a failed or killed flow never moves `champion`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from registry.gates import GateReport
from registry.lifecycle import CHAMPION, actor_name, alias_version, promote, reconcile
from registry.promotion import PromotionConfig, judge


def log_frozen_set(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest's test part (absolute paths, labels), logged so `approve` can re-run the gate later."""
    frozen = manifest.loc[manifest["split"] == "test", ["path", "label"]].copy()
    frozen["path"] = [str(Path(p).resolve()) for p in frozen["path"]]
    mlflow.log_text(frozen.to_csv(index=False), "promotion/frozen_eval.csv")
    return frozen


def shipped_file(model: str, version: str, into: Path) -> Path:
    """Download a registered version's ONNX file (the artefact devices run)."""
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{model}/{version}", dst_path=str(into)))
    return next(folder.rglob("*.onnx"))


def gate_version(
    cfg: PromotionConfig, model: str, version: str, export_metrics: dict, frozen: pd.DataFrame
) -> GateReport:
    """Score `version` against the gates and the current champion; record the result on the version."""
    client = mlflow.MlflowClient()
    reconcile(client, model)
    champion = alias_version(client, model, CHAMPION)
    with tempfile.TemporaryDirectory() as scratch:
        candidate = shipped_file(model, version, Path(scratch) / "candidate")
        champion_file = (
            shipped_file(model, champion, Path(scratch) / "champion")
            if champion and champion != version
            else None
        )
        report = judge(cfg, candidate, export_metrics, frozen, champion_file)
    client.set_model_version_tag(model, version, "gate_passed", str(report.passed).lower())
    client.set_model_version_tag(model, version, "gate_report", json.dumps(report.to_dict())[:4900])
    client.set_model_version_tag(model, version, "gate_champion_compared", champion or "none")
    return report


def release(
    cfg: PromotionConfig, model: str, version: str, export_metrics: dict, frozen: pd.DataFrame, flow: str
) -> tuple[GateReport, bool]:
    """Gate the candidate; promote it to champion when it passes and `auto_promote` is on."""
    report = gate_version(cfg, model, version, export_metrics, frozen)
    promoted = report.passed and cfg.auto_promote
    if promoted:
        promote(mlflow.MlflowClient(), model, version, actor_name(flow), report.to_dict())
    return report, promoted
