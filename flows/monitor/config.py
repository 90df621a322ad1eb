"""The drift monitor's settings: where telemetry is, how strict the alarms are. Light to import."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.settings import DEFAULT_EDGE_STATE, DEFAULT_TRACKING_URI


class MonitorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    state_dir: Path = DEFAULT_EDGE_STATE  # the edge server's: telemetry.db in, monitor.db beside it
    tracking_uri: str = DEFAULT_TRACKING_URI
    experiment: str = "drift-monitoring"  # one MLflow run per cycle
    models: tuple[str, ...] = ()  # () : every model that sent telemetry
    alpha: float = Field(0.01, gt=0, lt=1)  # false discovery rate across the devices of a cycle
    persist_k: int = Field(3, ge=1)  # drift when k of the last n windows were flagged
    persist_n: int = Field(4, ge=1)
    permutations: int = Field(500, ge=19)
    line: str = "line-1"  # the label events carry, for automations that act per line


class RetrainTarget(BaseModel):
    """What a drift event of one registered model starts: its training flow on this data and config."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str  # the registered model whose drift events trigger this retraining
    data: Path
    config: Path | None = None
    overrides: tuple[str, ...] = ()
    # an image line's model: the classifier (train-defect-classifier) or the image anomaly model
    # (train-image-anomaly); the vibration target ignores it
    kind: Literal["image-classifier", "image-anomaly"] = "image-classifier"


class LoopConfig(BaseModel):
    """`shopfloor monitor serve`: the monitor on a schedule and the retraining its events trigger."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    monitor: MonitorConfig = MonitorConfig()
    every_s: int = Field(300, ge=1)  # a monitoring cycle this often
    vibration: RetrainTarget = RetrainTarget(model="bearing-anomaly", data=Path("data/cwru_bearings"))
    # One per image product line: a drift of each registered model retrains that model on its line's data
    # (a single mapping in YAML is one target). The first is served as `on-drift`, others as `on-drift-MODEL`.
    images: tuple[RetrainTarget, ...] = (
        RetrainTarget(model="defect-classifier", data=Path("data/magnetic_tiles")),
    )
    # one retraining per model at a time (a second drift event while one runs is cancelled, not queued)
    retrain_concurrency: int = Field(1, ge=1)

    @field_validator("images", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return (value,) if isinstance(value, dict | RetrainTarget) else value

    @field_validator("images")
    @classmethod
    def _one_target_per_model(cls, value: tuple[RetrainTarget, ...]) -> tuple[RetrainTarget, ...]:
        models = [target.model for target in value]
        if not models or len(set(models)) < len(models):
            raise ValueError(f"images: give one retraining target per registered model, got models {models}")
        return value
