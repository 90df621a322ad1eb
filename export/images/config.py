"""Typed settings of the image classifier's ONNX export: light to import (no torch, no ONNX)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ExportConfig(BaseModel):
    """The int8 file is static QDQ with per-channel pair-safe 8-bit weights rounded by GPTQ, uint8
    activations calibrated by min/max on training images, and the first `float_convs` convolutions,
    the in-graph preprocessing and the head in float (export.images.int8). The alternatives that were
    measured and not adopted are listed in RESULTS.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calibration_images: int = Field(128, ge=8)  # drawn from the training part, never from test
    parity_atol: float = Field(1e-4, gt=0)
    latency_runs: int = Field(50, ge=5)
    threads: int = Field(2, ge=1)  # the edge box: 2 cores
    float_convs: int = Field(3, ge=0)  # first convolutions kept in float (see int8.float_nodes)
    seed: int = 0  # which training images calibrate
