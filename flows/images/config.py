"""The image jobs' whole configurations (the defect classifier's and the image anomaly model's): one
typed tree each, filled from YAML, overridden by `--set` (core.config).

Embedded defaults (the pydantic defaults) train a model on the shipped magnetic tiles; a YAML
file need only name what differs. The resolved tree is logged to MLflow with every run.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from data_checks.images.config import ChecksConfig
from export.images.config import ExportConfig
from registry.config import (
    ImageAnomalyPromotionConfig,
    ImageAnomalyTrackingConfig,
    PromotionConfig,
    TrackingConfig,
)
from training.images.config import (
    AugmentConfig,
    EvalConfig,
    FitConfig,
    ModelConfig,
    PatchCoreConfig,
    SplitConfig,
)


class ReviewConfig(BaseModel):
    """The label review list (confident learning on out-of-fold probabilities)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = True
    html_items: int = Field(60, ge=1)


class DefectJobConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    checks: ChecksConfig = ChecksConfig()
    review: ReviewConfig = ReviewConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    augment: AugmentConfig = AugmentConfig()
    fit: FitConfig = FitConfig()
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()
    promotion: PromotionConfig = PromotionConfig()
    tracking: TrackingConfig = TrackingConfig()
    work_dir: Path = Path("artifacts/runs")


class AnomalyEvalConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ok_class: str | None = None  # the good class (--good); None: found by name, as the classifier's
    map_examples: int = Field(4, ge=0)  # anomaly-map PNGs logged per kind (caught, missed/2, good/2)


class ImageAnomalyJobConfig(BaseModel):
    """`shopfloor train image-anomaly`: the same checks and grouped split (frozen test parts) as the
    line's classifier, a PatchCore model fitted on good parts, its own gate and registered name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    checks: ChecksConfig = ChecksConfig()
    split: SplitConfig = SplitConfig()
    model: PatchCoreConfig = PatchCoreConfig()
    eval: AnomalyEvalConfig = AnomalyEvalConfig()
    promotion: ImageAnomalyPromotionConfig = ImageAnomalyPromotionConfig()
    tracking: ImageAnomalyTrackingConfig = ImageAnomalyTrackingConfig()
    work_dir: Path = Path("artifacts/image_anomaly_runs")
