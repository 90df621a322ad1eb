"""The Prefect flow end to end on real CWRU records (small settings): lineage, promotion, scoring by alias,
and a failed run that never moves champion."""

from __future__ import annotations

import hashlib
import json

import mlflow
import numpy as np
import pytest

from core.errors import RegistryError
from data_checks.vibration.config import SensorRules
from device.vibration import score_file
from registry.artifacts import resolve_model
from tests.fixtures.data import CWRU

pytestmark = pytest.mark.slow

MODEL = "bearing-anomaly"


@pytest.fixture(scope="module")
def runs(vibration_runs):
    """The session's vibration runs, on their store (other modules point MLflow elsewhere meanwhile)."""
    mlflow.set_tracking_uri(f"sqlite:///{vibration_runs[3]}/mlflow.db")
    return vibration_runs


def test_good_run_registers_with_lineage_and_becomes_champion(runs):
    first, _, good, _ = runs
    client = mlflow.MlflowClient()
    version = client.get_model_version(MODEL, first.model_version)
    digest = hashlib.sha256()
    for path in sorted(good.iterdir()):
        digest.update(f"{path.name}:{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    assert version.tags["data_fingerprint"] == digest.hexdigest()
    assert len(version.tags["dvc_data_version"]) == 36 and version.tags["dvc_data_version"].endswith(".dir")
    assert version.tags["git_commit"] != "unknown" and version.tags["feature_set"] == "vibration-bearing@v1"
    assert first.gate_passed and first.promoted and first.false_alarm_rate <= 0.05
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == first.model_version
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["auroc_all_faults"] > 0.99
    artifacts = {
        a.path
        for folder in ("evaluation", "data_checks")
        for a in client.list_artifacts(first.run_id, folder)
    }
    for expected in ("evaluation/score_timeline.png", "evaluation/envelope_spectra.png", "evaluation/protocol.md",
                     "data_checks/findings.csv", "data_checks/data_docs", "data_checks/report.html"):  # fmt: skip
        assert expected in artifacts, expected
    # what a reviewer reads on the version's and the run's page (Markdown the MLflow UI renders)
    for page in (version.description, run.data.tags["mlflow.note.content"]):
        assert "False-alarm rate" in page and "### Promotion gate" in page and "| gate | threshold |" in page


def test_registered_model_loads_with_signature_and_scores_like_the_file(runs):
    first, *_ = runs
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    assert model.metadata.signature is not None
    card = model.metadata.metadata["card"]
    mean = np.asarray(card["model"]["normal_profile"]["mean"], dtype=np.float32)[None]
    scores = model.predict({"features": mean})["score"]
    assert scores.shape == (1,) and scores[0] < card["decision"]["threshold"]  # the normal profile is normal


def test_champion_scores_a_fault_file_from_the_registry(runs, tmp_path):
    onnx_file = resolve_model(f"{MODEL}@champion", tmp_path)
    report = score_file(CWRU / "cwru12k_DE_IR_014_1hp.npz", onnx_file, SensorRules())  # a load it never saw
    assert report.counts()["alarms"] >= 0.9 * report.counts()["windows"]
    assert "inner-race signature" in next(r.explanation for r in report.rows if r.alarm)


def test_score_command_prints_alarms_with_explanations(runs, tmp_path):
    from typer.testing import CliRunner

    from flows.cli.main import app

    _, _, _, root = runs
    out_json = tmp_path / "scores.json"
    result = CliRunner().invoke(app, ["score", "anomaly", "--model", f"{MODEL}@champion", "--tracking-uri",
                                      f"sqlite:///{root}/mlflow.db", "--json", str(out_json),
                                      str(CWRU / "cwru12k_DE_OR_007_at6_3hp.npz")], env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "outer-race signature in" in result.output and len(result.output.splitlines()) < 25  # a summary
    assert "ALARM" not in result.output  # the window table only with --windows
    [scored] = json.loads(out_json.read_text())
    windows = scored["windows"]
    assert len(windows) == 236 and sum(w["alarm"] for w in windows) >= 0.9 * len(windows)


def test_unknown_alias_says_how_to_get_a_model(runs, tmp_path):
    with pytest.raises(
        RegistryError, match=r"no registered model 'bearing-anomaly@nightly'.*shopfloor train anomaly"
    ):
        resolve_model(f"{MODEL}@nightly", tmp_path)


def test_failed_gate_and_failed_run_never_move_champion(runs):
    first, second, _, _ = runs
    client = mlflow.MlflowClient()
    assert not second.gate_passed and not second.promoted
    assert any("no fault records" in failure for failure in second.gate_failures)
    assert client.get_model_version(MODEL, second.model_version).tags["gate_passed"] == "false"
    assert str(client.get_model_version_by_alias(MODEL, "candidate").version) == second.model_version
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == first.model_version
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert len(versions) == 2  # the broken run registered nothing
    failed = mlflow.search_runs(filter_string="attributes.status = 'FAILED'", output_format="list")
    assert len(failed) == 1


def test_registry_approve_judges_a_vibration_model_with_its_own_gate(runs):
    """Finding: `registry approve` applied the image gates to a vibration model ("no export
    measurements (int8_macro_f1_drop...)")."""
    from typer.testing import CliRunner

    from flows.cli.main import app

    first, second, _, root = runs
    uri = ["--tracking-uri", f"sqlite:///{root}/mlflow.db"]
    runner = CliRunner()
    refused = runner.invoke(
        app, ["registry", "approve", MODEL, second.model_version, *uri], env={"COLUMNS": "250"}
    )
    assert refused.exit_code == 2, refused.output
    assert "vibration-anomaly promotion gate" in refused.output and "no fault records" in refused.output
    assert "int8" not in refused.output
    client = mlflow.MlflowClient()
    assert "shopfloor.approval" not in client.get_model_version(MODEL, second.model_version).tags
    assert (
        client.get_model_version(MODEL, first.model_version).tags["approved_by"]
        == "flow:retrain-anomaly-model"
    )
    card = mlflow.pyfunc.load_model(f"models:/{MODEL}/{first.model_version}").metadata.metadata["card"]
    assert (
        card["metrics"]["onnx_false_alarm_rate"] <= 0.05 and card["metrics"]["onnx_auroc_all_faults"] > 0.99
    )


def test_each_version_carries_its_monitoring_reference(runs):
    from registry.references import reference_loader

    first, _, _, root = runs
    reference = reference_loader(f"sqlite:///{root}/mlflow.db")(MODEL, first.model_version)
    assert reference["kind"] == "vibration-anomaly" and reference["items"] > 100
    assert {"score_ks", "feature:DE.log_rms"} <= set(reference["floors"]) and 0 < reference["floors"][
        "score_ks"
    ] < 1
    assert reference["alarm_rate"] <= 0.05 and len(reference["feature_names"]) == len(
        reference["features"][0]
    )
