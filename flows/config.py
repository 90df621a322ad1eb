"""The defect job's whole configuration: one typed tree, filled from YAML, overridden by `--set`.

Embedded defaults (the pydantic defaults) train a model on the shipped magnetic tiles; a YAML
file need only name what differs. The resolved tree is logged to MLflow with every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data_checks.config import ChecksConfig
from data_checks.errors import ConfigError
from registry.config import ExportConfig, PromotionConfig, TrackingConfig
from training.config import AugmentConfig, EvalConfig, FitConfig, ModelConfig, SplitConfig


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


def _set_dotted(tree: dict[str, Any], dotted: str, raw: str) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is a value, not a section")
    node[leaf] = yaml.safe_load(raw)  # "3" -> 3, "true" -> True, "[a, b]" -> list


def load_config(model: type[BaseModel], path: Path | None = None, overrides: list[str] | None = None) -> Any:
    """Validate YAML + `key.sub=value` overrides into `model`; errors name the key and the problem."""
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            tree = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from err
        if not isinstance(tree, dict):
            raise ConfigError(f"config {path} must be a mapping of sections, found {type(tree).__name__}")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (e.g. fit.epochs=3), got {item!r}")
        key, value = item.split("=", 1)
        _set_dotted(tree, key.strip(), value)
    try:
        return model.model_validate(tree)
    except ValidationError as err:
        problems = [
            f"  {'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in err.errors()
        ]
        source = f" in {path}" if path else ""
        raise ConfigError(f"invalid configuration{source}:\n" + "\n".join(problems)) from None
