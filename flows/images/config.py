"""The defect job's whole configuration: one typed tree, filled from YAML, overridden by `--set` (core.config).

Embedded defaults (the pydantic defaults) train a model on the shipped magnetic tiles; a YAML
file need only name what differs. The resolved tree is logged to MLflow with every run.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from data_checks.images.config import ChecksConfig
from export.images.config import ExportConfig
from registry.config import PromotionConfig, TrackingConfig
from training.images.config import AugmentConfig, EvalConfig, FitConfig, ModelConfig, SplitConfig


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
