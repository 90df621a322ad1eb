"""`shopfloor registry ...`: list versions, approve, roll back, and the alias history."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from core.settings import DEFAULT_TRACKING_URI
from flows.report import console

app = typer.Typer(help="Model registry: approve for the edge, roll back, history.", no_args_is_help=True)
TrackingOption = Annotated[
    str, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow store.")
]
DEFAULT_STORE = DEFAULT_TRACKING_URI


def _client(tracking_uri: str):
    """The existing store (commands here never create one), with the MLflow store's INFO lines quiet."""
    import logging

    from registry.tracking import existing_store

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return existing_store(tracking_uri)


def _model(client, model: str):
    from mlflow.exceptions import MlflowException

    from core.errors import RegistryError

    try:
        return client.get_registered_model(model)
    except MlflowException:
        known = sorted(m.name for m in client.search_registered_models(max_results=100))
        raise RegistryError(
            f"no registered model {model!r}; registered: {', '.join(known) or 'none yet'}"
        ) from None


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _moment(at: str) -> datetime:
    from core.errors import ConfigError

    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise ConfigError(
            f"--at {at!r}: give an ISO time such as 2026-11-25T14:00 (UTC unless it says otherwise)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("list")
def list_versions(model: str, tracking_uri: TrackingOption = DEFAULT_STORE) -> None:
    """Versions with their aliases, test macro-F1 and gate result."""
    client = _client(tracking_uri)
    aliases: dict[str, list[str]] = {}
    for alias, version in _model(client, model).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    table = Table(title=f"{model}", title_justify="left")
    for column in (
        "version",
        "aliases",
        "created",
        "test macro-F1",
        "int8 macro-F1",
        "gate",
        "approved by",
        "data (DVC)",
    ):
        table.add_column(column)
    for v in sorted(client.search_model_versions(f"name='{model}'"), key=lambda v: int(v.version)):
        gate = {"true": "[green]passed[/green]", "false": "[red]failed[/red]"}.get(
            v.tags.get("gate_passed", ""), "-"
        )
        table.add_row(
            str(v.version), ", ".join(aliases.get(str(v.version), [])), _when(v.creation_timestamp),
            v.tags.get("test_macro_f1", "-"), v.tags.get("int8_macro_f1", "-"), gate, v.tags.get("approved_by", "-"),
            v.tags.get("dvc_data_version", "-")[:12],
        )  # fmt: skip
    console.print(table)


@app.command()
def approve(
    model: str,
    version: str,
    override_gates: Annotated[
        bool, typer.Option("--override-gates", help="Promote although a gate fails.")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="Why (required with --override-gates).")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML with a promotion section.")
    ] = None,
    tracking_uri: TrackingOption = DEFAULT_STORE,
) -> None:
    """Judge VERSION's file now with its kind's gate and make it champion (approved for the edge).

    A version moved to champion in the MLflow UI is refused by the edge server until approved here.
    """
    from core.errors import ConfigError
    from registry.approval import approve as approve_version

    if override_gates and not (reason and reason.strip()):
        raise ConfigError("--override-gates needs --reason '...': the history must say why")
    _client(tracking_uri)
    report, events = approve_version(
        lambda kind: _promotion(kind, config), model, version, reason if override_gates else None
    )
    _print_checks(report)
    console.print(
        f"{model} version {version} is now champion"
        + "".join(f"\n  {e.alias}: {e.from_version} -> {e.to_version}" for e in events)
    )


def _promotion(kind: str, config: Path | None):
    """The promotion section of the job that makes models of `kind` (from `config` when given)."""
    from core.card import IMAGE_ANOMALY, IMAGE_CLASSIFIER
    from core.config import load_config
    from flows.images.config import DefectJobConfig, ImageAnomalyJobConfig
    from flows.vibration.config import AnomalyJobConfig

    jobs = {IMAGE_CLASSIFIER: DefectJobConfig, IMAGE_ANOMALY: ImageAnomalyJobConfig}
    return load_config(jobs.get(kind, AnomalyJobConfig), config).promotion


def _print_checks(report) -> None:
    for check in report.checks:
        mark = "[green]pass[/green]" if check.passed else "[red]FAIL[/red]"
        console.print(f"  {mark} {check.name}: {check.detail}")


def _print_table(model: str, version: str, card: dict) -> None:
    from registry.review import reject_section

    lines = [line.replace("**", "") for line in reject_section(card)[1:]]  # Markdown bold reads badly here
    console.print(
        f"{model} v{version}, reject threshold {card['decision'].get('defect_threshold'):.4f}",
        *lines,
        sep="\n",
    )


# set-threshold's ways to say which threshold
ThresholdOption = Annotated[
    float | None, typer.Option(help="Reject when P(defect) >= this (an anomaly model: score > this).")
]
RateOption = Annotated[float | None, typer.Option(help="Most defects caught rejecting at most this share of good parts "
                                                       "(held-out table; an anomaly model: of the --good-images).")]  # fmt: skip
RecallOption = Annotated[float | None, typer.Option(help="Fewest good parts rejected catching at least this share of "
                                                         "defects (held-out table).")]  # fmt: skip
GoodImagesOption = Annotated[Path | None, typer.Option(help="An anomaly model: a folder of good images from the line's "
                                                            "own camera to set the threshold on, with --false-reject-rate.")]  # fmt: skip


@app.command("set-threshold")
def set_threshold(
    model: str,
    version: str,
    threshold: ThresholdOption = None,
    false_reject_rate: RateOption = None,
    defect_recall: RecallOption = None,
    good_images: GoodImagesOption = None,
    reason: Annotated[str, typer.Option(help="Why (recorded in the history).")] = "",
    override_gates: Annotated[
        bool, typer.Option("--override-gates", help="Ship although a gate fails.")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML with a promotion section.")
    ] = None,
    tracking_uri: TrackingOption = DEFAULT_STORE,
) -> None:
    """Ship VERSION's image model with another reject threshold, without retraining.

    A classifier: without a threshold option, prints the held-out recall vs false-reject table to pick
    from. An image anomaly model: --threshold SCORE, or --false-reject-rate R with --good-images DIR (good
    parts from the line's own camera). The new threshold becomes a new version (same network), gated
    like any candidate; when VERSION is champion and the gate passes it becomes champion, and devices
    switch on their next pull.
    """
    import tempfile

    from registry.threshold import set_threshold as change_threshold
    from registry.threshold import source_card

    _client(tracking_uri)
    with tempfile.TemporaryDirectory() as scratch:
        source, card = source_card(model, version, Path(scratch))
        chosen, chosen_on = _chosen_threshold(
            model, version, source, card, threshold, false_reject_rate, defect_recall, good_images
        )
    cfg = _promotion(card["kind"], config)
    change = change_threshold(
        cfg, model, version, chosen, reason, reason if override_gates else None, chosen_on
    )
    _print_checks(change.gate)
    state = ("is now champion; devices switch on their next pull" if change.events
             else f"is a candidate (v{version} is not champion); `shopfloor registry approve {model} {change.version}` ships it")  # fmt: skip
    console.print(
        f"{model} v{change.version} (v{version}'s network, threshold {change.before:.4g} -> {change.after:.4g}) {state}"
    )


def _chosen_threshold(model, version, source, card, threshold, false_reject_rate, defect_recall, good_images):
    """(threshold, where it came from) as asked; with nothing asked, a classifier's table and one line."""
    from core.card import IMAGE_ANOMALY
    from core.errors import ConfigError
    from registry.threshold import calibrate_on_good_images, pick_threshold

    if card["kind"] == IMAGE_ANOMALY:
        if threshold is not None and false_reject_rate is None and good_images is None:
            if threshold < 0:
                raise ConfigError(f"--threshold {threshold}: an anomaly score, 0 or more")
            return threshold, "a threshold given by hand"
        if (
            threshold is None
            and false_reject_rate is not None
            and good_images is not None
            and defect_recall is None
        ):
            return calibrate_on_good_images(source, good_images, false_reject_rate)
        raise ConfigError(
            f"{model} v{version} is an image anomaly model (threshold {card['decision']['threshold']:.4g}): give "
            "--threshold SCORE, or --false-reject-rate R --good-images DIR (good parts from the line's own camera)"
        )
    if good_images is not None:
        raise ConfigError(
            "--good-images sets an image anomaly model's threshold; a classifier's comes from its held-out table"
        )
    if threshold is None and false_reject_rate is None and defect_recall is None:
        _print_table(model, version, card)
        raise ConfigError(
            "pick a threshold: --threshold T, --false-reject-rate R or --defect-recall R, with --reason '...'"
        )
    return pick_threshold(card, threshold, false_reject_rate, defect_recall), None


@app.command()
def rollback(model: str, tracking_uri: TrackingOption = DEFAULT_STORE) -> None:
    """Make previous-champion the champion again."""
    from registry.lifecycle import actor_name
    from registry.lifecycle import rollback as rollback_model

    events = rollback_model(_client(tracking_uri), model, actor_name())
    console.print(f"rolled back {model}: champion {events[0].from_version} -> {events[0].to_version}")


@app.command()
def history(
    model: str,
    at: Annotated[
        str | None, typer.Option(help="ISO time, e.g. 2026-11-25T14:00: which version was champion then.")
    ] = None,
    tracking_uri: TrackingOption = DEFAULT_STORE,
) -> None:
    """Every alias move: when, by whom or which flow, from and to which version, gate result."""
    from registry.lifecycle import champion_at, reconcile
    from registry.lifecycle import history as alias_history

    moment = _moment(at) if at else None  # a bad time fails before the store is touched
    client = _client(tracking_uri)
    _model(client, model)
    reconcile(client, model)
    events = alias_history(client, model)
    table = Table(title=f"alias history of {model}", title_justify="left")
    for column in ("when", "alias", "from", "to", "by", "action", "gate"):
        table.add_column(column)
    for e in events:
        gate = (
            "-" if e.gate is None
            else "refused by the edge server" if e.action == "edge-refused"
            else ("passed" if e.gate.get("passed") else "failed") + (" (overridden)" if e.gate.get("override_reason") else "")
        )  # fmt: skip
        table.add_row(
            _when(e.time_ms), e.alias, e.from_version or "-", e.to_version or "-", e.actor, e.action, gate
        )
    console.print(table)
    if moment is not None:
        console.print(
            f"champion at {at}: version {champion_at(events, int(moment.timestamp() * 1000)) or 'none'}"
        )
