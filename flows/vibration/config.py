"""The vibration anomaly job's whole configuration: one typed tree, filled from YAML, overridden by `--set`.

Embedded defaults train on the shipped CWRU bearing records (drive-end channel "DE", in g);
configs/anomaly.yaml need only name what differs. Light to import: the CLI validates it before
Prefect, torch or GX load.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from data_checks.vibration.config import SensorRules
from export.vibration.config import AnomalyExportConfig
from inputs.vibration.signals import SensorDeclaration
from registry.config import VibrationPromotionConfig, VibrationTrackingConfig
from training.vibration.config import AnomalyTrainConfig


class CwruDeclaration(SensorDeclaration):
    """What the shipped CWRU .npz files leave out (a subclass, so `--set data.declared.rpm=...` keeps these)."""

    channels: tuple[str, ...] | None = ("DE",)
    units: str | None = "g"


class SensorDataConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    declared: CwruDeclaration = CwruDeclaration()
    rules: SensorRules = SensorRules()
    normal_labels: tuple[str, ...] = ("normal",)  # records with these labels train; all others are faults


class AnomalyJobConfig(AnomalyTrainConfig):
    """The training stages' settings (window, features, model, threshold, split, explain) and the rest of the job."""

    data: SensorDataConfig = SensorDataConfig()
    export: AnomalyExportConfig = AnomalyExportConfig()
    promotion: VibrationPromotionConfig = VibrationPromotionConfig()
    tracking: VibrationTrackingConfig = VibrationTrackingConfig()
    work_dir: Path = Path("artifacts/anomaly_runs")
