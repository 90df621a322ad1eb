"""Typed settings of tracking and of each kind's promotion gate: light to import (no MLflow, torch or ONNX)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from core.settings import DEFAULT_TRACKING_URI


class TrackingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tracking_uri: str = DEFAULT_TRACKING_URI
    experiment: str = "defect-classifier"
    model_name: str = "defect-classifier"
    line: str | None = (
        None  # the product line the model serves (registry.lines); default: the data set's folder name
    )


class VibrationTrackingConfig(TrackingConfig):
    """Its own experiment and registered name, so vibration runs never mix with the defect classifier's
    (a subclass, not a default instance: `--set tracking.tracking_uri=...` must keep these names)."""

    experiment: str = "bearing-anomaly"
    model_name: str = "bearing-anomaly"


class PromotionConfig(BaseModel):
    """The image classifier's gate, judged on the int8 file that ships (registry.images)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    auto_promote: bool = True  # the flow promotes a candidate that passes; False: wait for `approve`
    min_macro_f1: float = Field(0.45, ge=0, le=1)
    min_class_recall: float = Field(0.10, ge=0, le=1)
    max_int8_macro_f1_drop: float = Field(0.02, ge=0)  # 2 points of macro-F1
    min_top1_agreement: float = Field(0.97, ge=0, le=1)
    max_latency_ms_p95: float = Field(60.0, gt=0)
    not_worse_than_champion: bool = True
    champion_tolerance: float = Field(0.0, ge=0)  # macro-F1 the candidate may trail the champion by
    # the reject decision at the file's own threshold, on the frozen set (None: not judged); loose bounds
    # around the line's rule (eval.reject_rule), which is set on ~25-100 validation parts and moves on test
    min_defect_recall: float | None = Field(0.50, ge=0, le=1)
    max_false_reject_rate: float | None = Field(0.25, ge=0, le=1)


class VibrationPromotionConfig(BaseModel):
    """The vibration model's gate (registry.vibration): both measured numbers must pass."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    auto_promote: bool = True
    max_false_alarm_rate: float = Field(0.01, ge=0, le=1)  # on held-out normal windows
    min_auroc: float | None = Field(0.99, ge=0, le=1)  # over all fault windows; None: no fault records needed


class ImageAnomalyTrackingConfig(TrackingConfig):
    """Its own experiment; the registered name is the line's own unless chosen (a subclass, as above)."""

    experiment: str = "image-anomaly"
    model_name: str = ""  # empty: `<product line>-anomaly` (flows.images.preflight)


class ImageAnomalyPromotionConfig(BaseModel):
    """The image anomaly model's gate (registry.image_anomaly), judged on the test parts as the exported
    file scores them. Recall and AUROC need labelled defects; a line without any yet is judged on false
    rejects alone, and the version page says so."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    auto_promote: bool = True
    max_false_reject_rate: float = Field(0.10, ge=0, le=1)  # good test parts rejected (target 0.05 on val)
    min_defect_recall: float | None = Field(0.30, ge=0, le=1)  # at the file's threshold; None: not judged
    min_auroc: float | None = Field(0.70, ge=0, le=1)
