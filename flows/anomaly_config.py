"""The vibration anomaly job's whole configuration: one typed tree, filled from YAML, overridden by `--set`.

Embedded defaults train on the shipped CWRU bearing records (drive-end channel "DE", in g);
configs/anomaly.yaml need only name what differs. Light to import: the CLI validates it before
Prefect, torch or GX load.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from data_checks.config import SensorDeclaration, SensorRules
from registry.anomaly_config import AnomalyExportConfig, AnomalyPromotionConfig, AnomalyTrackingConfig
from training.anomaly.config import (
    AnomalyModelConfig,
    AnomalyTrainConfig,
    ExplainConfig,
    FeatureConfig,
    SplitConfig,
    ThresholdConfig,
    WindowConfig,
)


class CwruDeclaration(SensorDeclaration):
    """What the shipped CWRU .npz files leave out (a subclass, so `--set data.declared.rpm=...` keeps these)."""

    channels: tuple[str, ...] | None = ("DE",)
    units: str | None = "g"


class SensorDataConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    declared: CwruDeclaration = CwruDeclaration()
    rules: SensorRules = SensorRules()
    normal_labels: tuple[str, ...] = ("normal",)  # records with these labels train; all others are faults


class AnomalyJobConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    data: SensorDataConfig = SensorDataConfig()
    window: WindowConfig = WindowConfig()
    features: FeatureConfig = FeatureConfig()
    model: AnomalyModelConfig = AnomalyModelConfig()
    threshold: ThresholdConfig = ThresholdConfig()
    split: SplitConfig = SplitConfig()
    explain: ExplainConfig = ExplainConfig()
    export: AnomalyExportConfig = AnomalyExportConfig()
    promotion: AnomalyPromotionConfig = AnomalyPromotionConfig()
    tracking: AnomalyTrackingConfig = AnomalyTrackingConfig()
    work_dir: Path = Path("artifacts/anomaly_runs")

    def train_config(self) -> AnomalyTrainConfig:
        """The part the training stage sees."""
        return AnomalyTrainConfig(
            window=self.window, features=self.features, model=self.model, threshold=self.threshold,
            split=self.split, explain=self.explain,
        )  # fmt: skip
