"""What an image training (defect classifier or image anomaly model) refuses in its first seconds,
before Prefect starts (CLI) or any check reads a pixel (the flow, also when started from the Prefect
UI): a declared good class the data lacks, and a model name another product line owns. Light to
import: the CLI calls it."""

from __future__ import annotations

from pathlib import Path

from flows.images.config import DefectJobConfig, ImageAnomalyJobConfig

ImageJob = DefectJobConfig | ImageAnomalyJobConfig


def preflight(cfg: ImageJob, data: Path, store: str | None, client=None) -> ImageJob:
    """`cfg` with its product line and model name settled (registry.lines); an image anomaly model
    left unnamed is the line's own, `<line>-anomaly`. `store`: "check" the line
    against the tracking store (the CLI), "claim" the model name for it (the flow and the DVC register
    stage, before their run starts), or None (a submission to the team stack: the worker's flow checks
    its own store). `client`: the caller's MlflowClient, when it has one."""
    from registry.lines import line_of, settle_line
    from training.images.reject_rule import check_declared_good_class

    check_declared_good_class(data, cfg.eval.ok_class)
    line = line_of(data, cfg.tracking.line)
    model = cfg.tracking.model_name or f"{line}-anomaly"
    if store is not None:
        import mlflow

        from flows.report import console
        from registry.tracking import bound_http

        if client is None:
            bound_http(cfg.tracking)  # a tracking server that is down answers in bounded time
            client = mlflow.MlflowClient(cfg.tracking.tracking_uri)
        chosen = "model_name" in cfg.tracking.model_fields_set or not cfg.tracking.model_name
        model = settle_line(client, model, line, chosen, claim=store == "claim")
        if model != (cfg.tracking.model_name or model) and store == "claim":
            console.print(f"[yellow]product line {line!r}: {cfg.tracking.model_name!r} serves another line; this line's "
                          f"model is {model!r} (choose one with --set tracking.model_name=NAME)[/yellow]")  # fmt: skip
    return cfg.model_copy(
        update={"tracking": cfg.tracking.model_copy(update={"line": line, "model_name": model})}
    )


def settle_colour(cfg: ImageJob, manifest) -> ImageJob:
    """`cfg` with `model.colour` decided once the images are known (declared, or found from the data set:
    inputs.images.looks_colour), recorded on the run (tag `input`) and said when it is colour."""
    import mlflow

    from flows.report import console
    from training.images.data import colour_of

    colour = colour_of(cfg.model.colour, manifest)
    mlflow.set_tag("input", "RGB" if colour else "grey")
    if colour and cfg.model.colour is None:
        console.print(
            "colour images: the model keeps three channels (RGB); --set model.colour=false for grey"
        )
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"colour": colour})})


def settle_good_class(cfg: ImageJob, classes: list[str]) -> ImageJob:
    """`cfg` with `eval.ok_class` settled once the classes are known (declared, or found by name with a
    warning: training.images.reject_rule.good_class), recorded on the run (tag `good_class`), before any
    training; None when no class is the good one (a classifier then makes no reject decision)."""
    import mlflow

    from flows.report import console
    from training.images.reject_rule import good_class

    good, note = good_class(classes, cfg.eval.ok_class)
    if note:
        console.print(f"[yellow]{note}[/yellow]")
    mlflow.set_tag("good_class", good or "none: no reject decision")
    return cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"ok_class": good})})
