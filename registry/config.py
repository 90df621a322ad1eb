"""Typed settings of tracking, export and promotion: light to import (no MLflow, torch or ONNX)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrackingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "defect-classifier"
    model_name: str = "defect-classifier"


class ExportConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    calibration_images: int = Field(128, ge=8)  # drawn from the training part, never from test
    parity_atol: float = Field(1e-4, gt=0)
    latency_runs: int = Field(50, ge=5)
    threads: int = Field(2, ge=1)  # the edge box: 2 cores
    float_convs: int = Field(3, ge=0)  # first convolutions kept in float (see onnx_export.float_nodes)
    calibration_method: Literal["minmax", "percentile", "entropy"] = "minmax"
    # "pair-safe": 8-bit weights scaled so x86 u8 x s8 kernels without VNNI cannot saturate (see
    # onnx_export.weight_grid). Validation (160 images): mean |p_int8 - p_fp32| 0.0031 vs 0.0056
    # for 7-bit ("reduced") and 0.0099 for plain 8-bit ("full"), same graph and cost
    # (benchmarks/int8_settings.py).
    weight_range: Literal["pair-safe", "reduced", "full"] = "pair-safe"
    # Residual-stream equalization of the int8 copy (registry/equalize.py): how far quiet stream
    # channels are lifted (1: as loud as the loudest; 0: only as the reading weights allow); None: off.
    # Validation (160 images), nearest rounding: without distillation 0.0056 -> 0.0044 at 0.5, in a
    # second; with one distillation epoch 0.0037 -> 0.0049 (0.0042 at 0.75). With GPTQ rounding
    # 0.0026 -> 0.0028 / 0.0025 at 0.5 / 0.75: within the spread of seeds, so it stays off.
    equalize_alpha: float | None = Field(None, ge=0, le=1)
    # Quantization-aware distillation of the int8 copy (registry/quant_aware.py); 0 turns it off.
    # Validation (160 images), one epoch at 3e-6 with nearest rounding: mean |p_int8 - p_fp32|
    # 0.0056 -> 0.0037 on the demo model (0.0031 -> 0.0021 on the stop-12 model). Off since GPTQ
    # rounding (below) does better alone and the two do not stack (distilled then GPTQ: 0.0056).
    quant_aware_epochs: int = Field(0, ge=0)
    quant_aware_lr: float = Field(3e-6, gt=0)
    # How the int8 weights are rounded (registry/weight_rounding.py): "gptq" rounds so each layer's
    # output on the calibration images moves least, "nearest" rounds each weight on its own.
    # Validation, demo model: 0.0056 (nearest) -> 0.0026-0.0029 (gptq, seeds 0-2; 160 images of a
    # re-split that held some training images); on the flow's own split (156 held-out images)
    # 0.0052-0.0061 against 0.0092 for the distillation. About 40 s; same grid, size and latency.
    weight_rounding: Literal["gptq", "nearest"] = "gptq"
    seed: int = 0


class PromotionConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    auto_promote: bool = True  # the flow promotes a candidate that passes; False: wait for `approve`
    min_macro_f1: float = Field(0.45, ge=0, le=1)
    min_class_recall: float = Field(0.10, ge=0, le=1)
    max_int8_macro_f1_drop: float = Field(0.02, ge=0)  # 2 points of macro-F1
    min_top1_agreement: float = Field(0.97, ge=0, le=1)
    max_latency_ms_p95: float = Field(60.0, gt=0)
    not_worse_than_champion: bool = True
    champion_tolerance: float = Field(0.0, ge=0)  # macro-F1 the candidate may trail the champion by
