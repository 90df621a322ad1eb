"""Typed settings of the anomaly model's export and promotion gate: light to import."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from registry.config import TrackingConfig


class AnomalyExportConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Scores are compared relative to the threshold's scale: |ONNX - Python| <= atol + rtol x |Python|.
    parity_atol: float = Field(1e-5, gt=0)
    parity_rtol: float = Field(1e-4, ge=0)
    parity_windows: int = Field(512, ge=8)  # real windows (normal and fault) the parity check runs on
    opset: int = Field(18, ge=17, le=18)


class AnomalyPromotionConfig(BaseModel):
    """A candidate becomes champion only when both measured numbers pass."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    auto_promote: bool = True
    max_false_alarm_rate: float = Field(0.01, ge=0, le=1)  # on held-out normal windows
    min_auroc: float | None = Field(0.99, ge=0, le=1)  # over all fault windows; None: no fault records needed


class AnomalyTrackingConfig(TrackingConfig):
    """Its own experiment and registered name, so anomaly runs never mix with the defect classifier's
    (a subclass, not a default instance: `--set tracking.tracking_uri=...` must keep these names)."""

    experiment: str = "bearing-anomaly"
    model_name: str = "bearing-anomaly"
