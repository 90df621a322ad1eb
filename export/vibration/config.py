"""Typed settings of the vibration model's ONNX export: light to import."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AnomalyExportConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Scores are compared relative to the threshold's scale: |ONNX - Python| <= atol + rtol x |Python|.
    parity_atol: float = Field(1e-5, gt=0)
    parity_rtol: float = Field(1e-4, ge=0)
    parity_windows: int = Field(512, ge=8)  # real windows (normal and fault) the parity check runs on
    opset: int = Field(18, ge=17, le=18)
