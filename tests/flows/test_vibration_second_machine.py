"""A second machine, end to end as the README tells a user (issue 25): data derived from the CWRU records
(20 kHz, channels B1x/B1y, m/s^2, an NSK 6205 by numbers), trained with configs/anomaly-pump7.yaml, and a
folder scored in one command: a summary first, details in JSON, explanations in words, and a warning
on the file the model trained on."""

from __future__ import annotations

import json
import os
import shutil

import mlflow
import pytest
from typer.testing import CliRunner

from benchmarks.second_machine import make_second_machine
from tests.fixtures.data import REPO
from tests.fixtures.vibration import SMALL

pytestmark = pytest.mark.slow
CONFIG = REPO / "configs" / "anomaly-pump7.yaml"


@pytest.fixture(scope="module")
def pump7(prefect_harness, tmp_path_factory):
    root = tmp_path_factory.mktemp("pump7")
    data = make_second_machine(root / "data", ("normal", "IR_007_0hp", "OR_021_at6_0hp"))
    uri = f"sqlite:///{root}/mlflow.db"
    cwd = os.getcwd()
    os.chdir(root)  # MLflow puts artifacts beside the store's working folder
    try:
        from flows.vibration.flow import retrain_anomaly_model

        summary = retrain_anomaly_model(
            str(data), str(CONFIG), SMALL + [f"tracking.tracking_uri={uri}", f"work_dir={root}/runs"]
        )
    finally:
        os.chdir(cwd)
    mlflow.set_tracking_uri(uri)
    return summary, data, root, uri


def score(*args: str):
    from flows.cli.main import app

    return CliRunner().invoke(app, ["score", "anomaly", *args], env={"COLUMNS": "200"})


def test_second_machine_trains_with_its_own_config(pump7):
    summary, *_ = pump7
    assert summary.model_name == "pump7-anomaly" and summary.auroc_all_faults > 0.99
    card = mlflow.pyfunc.load_model(f"models:/pump7-anomaly/{summary.model_version}").metadata.metadata[
        "card"
    ]
    spec = card["input"]["preprocessing"]
    assert spec["channels"] == ["B1x", "B1y"] and spec["sample_rate"] == 20000 and spec["units"] == "m/s^2"
    assert spec["feature_set"]["config"]["bearing"]["name"] == "NSK 6205"


def test_a_folder_scores_in_one_command_summary_first_details_in_json(pump7, tmp_path):
    """Findings: one command per file, ~1,850 lines per fault file of feature jargon, and no warning
    when scoring the record the model trained on."""
    summary, data, _, uri = pump7
    bad = tmp_path / "folder"
    shutil.copytree(data, bad)
    (bad / "pump7_broken.csv").write_text("time,B1x\n0,1\n")  # one channel, no sample rate: not scored
    out_json = tmp_path / "scores.json"
    result = score(
        "--model",
        f"pump7-anomaly/{summary.model_version}",
        "--tracking-uri",
        uri,
        "--json",
        str(out_json),
        str(bad),
    )
    assert result.exit_code == 2, result.output  # the broken file is named; the other three are scored
    lines = result.output.splitlines()
    assert len(lines) < 30 and "pump7_broken.csv: sample_rate: none declared" in result.output
    assert "inner-race signature in" in result.output and "outer-race signature in" in result.output
    assert " sd" not in result.output and "band_" not in result.output
    [warning] = [line for line in lines if line.startswith("warning:")]
    assert "pump7_normal.npz" in warning and "trained this model" in warning
    details = {os.path.basename(r["file"]): r for r in json.loads(out_json.read_text())}
    assert set(details) == {"pump7_normal.npz", "pump7_IR_007_0hp.npz", "pump7_OR_021_at6_0hp.npz"}
    ir = details["pump7_IR_007_0hp.npz"]
    assert ir["summary"]["alarms"] >= 0.9 * len(ir["windows"]) == 0.9 * ir["summary"]["windows"]
    assert ir["summary"]["training_overlap"] == "" and "(normal " in ir["summary"]["top_explanation"]
    assert details["pump7_normal.npz"]["summary"]["training_overlap"]
