"""What a defect training refuses in its first seconds, before Prefect starts (CLI) or any check
reads a pixel (a run started from the Prefect UI): a declared good class the data lacks, and a model
name another product line owns. Light to import: the CLI calls it."""

from __future__ import annotations

from pathlib import Path

from flows.images.config import DefectJobConfig


def preflight(cfg: DefectJobConfig, data: Path) -> DefectJobConfig:
    """`cfg` with its product line settled (registry.lines), once both checks passed."""
    import mlflow

    from registry.lines import check_line, line_of
    from training.images.reject_rule import check_declared_good_class

    check_declared_good_class(data, cfg.eval.ok_class)
    line = line_of(data, cfg.tracking.line)
    check_line(mlflow.MlflowClient(cfg.tracking.tracking_uri), cfg.tracking.model_name, line)
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"line": line})})
