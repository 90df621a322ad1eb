"""Registry lifecycle: gates, promotion, rollback, history, and moves made outside shopfloor."""

from __future__ import annotations

import time

import pytest

from core.errors import RegistryError
from registry.images import release
from registry.lifecycle import (
    CANDIDATE,
    CHAMPION,
    PREVIOUS,
    alias_version,
    champion_at,
    history,
    promote,
    reconcile,
    rollback,
)
from tests.fixtures.models import LENIENT, register_exports

pytestmark = pytest.mark.slow


def _frozen(manifest):
    return manifest[manifest["split"] == "test"]


def test_candidate_passing_the_gates_becomes_champion_and_history_says_so(exported_pair, registry_store):
    reports, manifest = exported_pair
    cfg, client = registry_store
    v1, v2 = register_exports(reports)
    assert alias_version(client, "tiles", CANDIDATE) == v2  # registering never touches champion
    assert alias_version(client, "tiles", CHAMPION) is None

    gate, promoted = release(LENIENT, "tiles", v1, reports[0].flat(), _frozen(manifest), "test-flow")
    assert gate.passed and promoted and alias_version(client, "tiles", CHAMPION) == v1
    assert client.get_model_version("tiles", v1).tags["gate_passed"] == "true"

    gate, promoted = release(LENIENT, "tiles", v2, reports[1].flat(), _frozen(manifest), "test-flow")
    assert promoted  # same model, same frozen set: not worse than the champion
    assert alias_version(client, "tiles", CHAMPION) == v2 and alias_version(client, "tiles", PREVIOUS) == v1

    events = history(client, "tiles")
    moves = [(e.alias, e.from_version, e.to_version, e.actor) for e in events]
    assert (CHAMPION, None, v1, "flow:test-flow") in moves
    assert (PREVIOUS, None, v1, "flow:test-flow") in moves and (CHAMPION, v1, v2, "flow:test-flow") in moves
    assert all(e.gate and e.gate["passed"] for e in events if e.alias in (CHAMPION, PREVIOUS))
    assert [e.to_version for e in events if e.alias == CANDIDATE] == [v1, v2]  # registering is recorded too


def test_failing_gate_keeps_the_champion(exported_pair, registry_store):
    reports, manifest = exported_pair
    _, client = registry_store
    v1, v2 = register_exports(reports)
    release(LENIENT, "tiles", v1, reports[0].flat(), _frozen(manifest), "test")
    strict = LENIENT.model_copy(update={"min_macro_f1": 0.99})
    gate, promoted = release(strict, "tiles", v2, reports[1].flat(), _frozen(manifest), "test")
    assert not gate.passed and not promoted
    assert any("int8_macro_f1" in failure for failure in gate.failures())
    assert alias_version(client, "tiles", CHAMPION) == v1
    assert client.get_model_version("tiles", v2).tags["gate_passed"] == "false"


def test_latency_and_agreement_gates_judge_the_int8_file(exported_pair, registry_store):
    reports, manifest = exported_pair
    _, client = registry_store
    [v1] = register_exports(reports[:1])
    slow = LENIENT.model_copy(update={"max_latency_ms_p95": 0.001, "min_top1_agreement": 1.01})
    gate, promoted = release(slow, "tiles", v1, reports[0].flat(), _frozen(manifest), "test")
    failed = {c.name for c in gate.checks if not c.passed}
    assert {"int8_latency_p95", "int8_top1_agreement"} <= failed and not promoted


def test_rollback_restores_previous_champion_and_answers_what_ran_when(exported_pair, registry_store):
    reports, manifest = exported_pair
    _, client = registry_store
    v1, v2 = register_exports(reports)
    promote(client, "tiles", v1, "user:test", None)
    between = int(time.time() * 1000)
    time.sleep(0.01)
    promote(client, "tiles", v2, "user:test", None)
    rollback(client, "tiles", "user:test")
    assert alias_version(client, "tiles", CHAMPION) == v1
    assert client.get_model_version("tiles", v2).tags["rolled_back"] == "true"
    events = history(client, "tiles")
    assert champion_at(events, between) == v1
    assert champion_at(events, events[-1].time_ms) == v1
    with pytest.raises(RegistryError, match="no previous-champion"):
        rollback(client, "tiles", "user:test")


def test_alias_set_in_the_mlflow_ui_is_recorded(exported_pair, registry_store):
    reports, _ = exported_pair
    _, client = registry_store
    v1, v2 = register_exports(reports)
    promote(client, "tiles", v1, "user:test", None)
    client.set_registered_model_alias("tiles", CHAMPION, v2)  # what the UI does
    [event] = [e for e in reconcile(client, "tiles") if e.alias == CHAMPION]
    assert (event.from_version, event.to_version, event.actor) == (v1, v2, "mlflow-ui-or-api")
    assert reconcile(client, "tiles") == []  # recorded once


def test_manual_approval_reruns_the_gate_and_override_needs_a_reason(exported_pair, registry_store):
    from registry.approval import approve

    reports, manifest = exported_pair
    _, client = registry_store
    v1, v2 = register_exports(reports, manifest=manifest)
    report, _ = approve(lambda kind: LENIENT, "tiles", v1)
    assert report.passed and alias_version(client, "tiles", CHAMPION) == v1
    strict = LENIENT.model_copy(update={"min_macro_f1": 0.99})
    with pytest.raises(RegistryError, match="fails the image-classifier promotion gate"):
        approve(lambda kind: strict, "tiles", v2)
    assert alias_version(client, "tiles", CHAMPION) == v1
    approve(lambda kind: strict, "tiles", v2, override_reason="line stopped, old model misses cracks")
    assert alias_version(client, "tiles", CHAMPION) == v2
    last = [e for e in history(client, "tiles") if e.alias == CHAMPION][-1]
    assert last.gate["override_reason"].startswith("line stopped") and last.actor.startswith("user:")


def test_registry_cli_lists_versions_and_history(exported_pair, registry_store):
    from typer.testing import CliRunner

    from flows.cli.main import app

    reports, manifest = exported_pair
    cfg, client = registry_store
    v1, v2 = register_exports(reports, manifest=manifest)
    promote(client, "tiles", v1, "user:test", None)
    runner = CliRunner()
    listed = runner.invoke(
        app, ["registry", "list", "tiles", "--tracking-uri", cfg.tracking_uri], env={"COLUMNS": "250"}
    )
    assert listed.exit_code == 0, listed.output
    assert "champion" in listed.output and "candidate" in listed.output
    shown = runner.invoke(
        app, ["registry", "history", "tiles", "--tracking-uri", cfg.tracking_uri, "--at", "2999-01-01T00:00"]
    )
    assert shown.exit_code == 0, shown.output
    assert f"champion at 2999-01-01T00:00: version {v1}" in shown.output.replace("\n", " ")


def test_read_only_commands_change_nothing(tmp_path, monkeypatch):
    """Finding: `registry list nosuch-model` created mlflow.db and an experiment, then exited 1."""
    from typer.testing import CliRunner

    from flows.cli.main import app

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for args in (["registry", "list", "nosuch-model"], ["registry", "history", "nosuch-model"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "no tracking store" in result.output, result.output
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, no mlruns


def test_unknown_models_and_times_are_one_line_errors(registry_store):
    from typer.testing import CliRunner

    from flows.cli.main import app

    cfg, client = registry_store
    experiments = len(client.search_experiments())
    runner = CliRunner()
    result = runner.invoke(app, ["registry", "list", "nosuch-model", "--tracking-uri", cfg.tracking_uri])
    assert result.exit_code == 2 and "no registered model 'nosuch-model'" in result.output
    assert len(client.search_experiments()) == experiments
    at = runner.invoke(
        app, ["registry", "history", "tiles", "--at", "yesterday", "--tracking-uri", cfg.tracking_uri]
    )
    assert at.exit_code == 2 and "give an ISO time" in at.output


def test_approve_measures_the_file_it_judges(exported_pair, registry_store):
    """Finding: `approve` re-used the run's int8 latency for the file it judged. The run now claims a
    100 s latency; the file itself answers in milliseconds, and that is what the gate reads."""
    from registry.approval import approve

    reports, manifest = exported_pair
    _, client = registry_store
    [v1] = register_exports(reports[:1], manifest=manifest)
    run_id = client.get_model_version("tiles", v1).run_id
    client.log_metric(run_id, "onnx_int8_latency_ms_p95", 100_000.0)
    report, _ = approve(lambda kind: LENIENT.model_copy(update={"max_latency_ms_p95": 1000}), "tiles", v1)
    [latency] = [c for c in report.checks if c.name == "int8_latency_p95"]
    assert latency.passed and latency.value < 1000
    [agreement] = [c for c in report.checks if c.name == "int8_top1_agreement"]
    assert agreement.value == pytest.approx(
        reports[0].top1_agreement, abs=0.05
    )  # against the run's fp32 file
