"""ONNX export of both models: checker, parity with Python on real windows, a self-describing file,
and scoring a file from the exported model alone (bad input is flagged or refused, never scored)."""

from __future__ import annotations

import numpy as np
import pytest

from core.card import FORMAT, VIBRATION_ANOMALY, read_card
from core.errors import ConfigError, DataCheckFailed
from data_checks.vibration.config import SensorRules
from device.vibration import score_file
from export.vibration.config import AnomalyExportConfig
from export.vibration.onnx import onnx_scores
from export.vibration.stage import export_anomaly_model
from inputs.vibration.features import features_from_card
from tests.fixtures.vibration import small_train_config
from training.vibration.evaluate import evaluate_protocol


@pytest.fixture(scope="module")
def exported(small_dataset, trained_models, tmp_path_factory):
    out = {}
    for name, trained in trained_models.items():
        cfg = small_train_config(name)
        report = evaluate_protocol(cfg, trained, small_dataset)
        out[name] = export_anomaly_model(
            cfg, trained, small_dataset, report.flat(), {"git_commit": "test"},
            AnomalyExportConfig(parity_windows=256), tmp_path_factory.mktemp(name),
        )  # fmt: skip
    return out


@pytest.mark.parametrize("name", ["isolation_forest", "autoencoder"])
def test_onnx_scores_equal_python_scores_on_real_windows(small_dataset, trained_models, exported, name):
    features = small_dataset.features("test", None)  # held-out normal and every fault window
    python = trained_models[name].model.score(features)
    got = onnx_scores(exported[name].path, features)
    np.testing.assert_allclose(got, python, rtol=1e-4, atol=1e-5)
    threshold = trained_models[name].threshold.value
    assert np.array_equal(got > threshold, python > threshold)  # the same alarms
    assert exported[name].parity_max_abs <= 1e-5 + 1e-4 * np.abs(python).max()


@pytest.mark.parametrize("name", ["isolation_forest", "autoencoder"])
def test_the_file_describes_itself(small_dataset, trained_models, exported, name):
    card = read_card(exported[name].path)
    trained = trained_models[name]
    assert card["format"] == FORMAT and card["kind"] == VIBRATION_ANOMALY and card["model"]["name"] == name
    spec = card["input"]["preprocessing"]
    assert (
        spec["feature_set"]["id"] == "vibration-bearing@v1"
        and spec["feature_set"]["names"] == trained.feature_names
    )
    assert (spec["sample_rate"], spec["channels"], spec["units"], spec["window"]) == (
        12000.0,
        ["DE"],
        "g",
        2048,
    )
    assert card["decision"]["threshold"] == trained.threshold.value
    np.testing.assert_allclose(card["model"]["normal_profile"]["spread"], trained.normal_spread)
    assert card["model"]["bearing"]["orders"]["BPFI"] == pytest.approx(5.4152, abs=1e-3)
    assert card["export"]["parity_max_abs"] == exported[name].parity_max_abs
    # the reference: held-out normal windows as the exported file scores them
    reference = card["reference"]
    assert (
        reference["windows"]
        == len(small_dataset.features("test", True))
        == sum(reference["score_histogram"]["counts"])
    )
    assert reference["score_quantiles"]["0.99"] <= trained.threshold.value * 1.5 + 1.0
    assert features_from_card(card) == small_train_config().features
    wrong = card | {
        "input": card["input"]
        | {"preprocessing": spec | {"feature_set": spec["feature_set"] | {"id": "vibration-bearing@v0"}}}
    }
    with pytest.raises(ConfigError, match="trained on features vibration-bearing@v0"):
        features_from_card(wrong)


def test_scoring_flags_the_nan_burst_windows_and_explains_the_rest(exported, bad_corpus):
    report = score_file(bad_corpus["nan_burst"], exported["isolation_forest"].path, SensorRules())
    flagged = [r for r in report.rows if r.flag]
    assert flagged and all(r.score is None and not r.alarm and r.flag == "nan_burst" for r in flagged)
    assert all(r.start + 2048 > 6000 and r.start < 6300 for r in flagged)
    scored = [r for r in report.rows if not r.flag]
    assert all(r.alarm for r in scored)  # a real inner-race record
    assert sum("inner-race signature" in r.explanation for r in scored) >= 0.9 * len(scored)
    assert {f.rule for f in report.findings} == {"nan_burst"}


@pytest.mark.parametrize("name", ["declared_48k", "wrong_rate_timestamps", "wrong_rate_native"])
def test_scoring_refuses_a_wrong_sample_rate(exported, bad_corpus, name):
    with pytest.raises(DataCheckFailed, match="cannot be scored"):
        score_file(bad_corpus[name], exported["isolation_forest"].path, SensorRules())


def test_scoring_the_clean_slice_has_no_flags(exported, bad_corpus):
    report = score_file(bad_corpus["clean"], exported["autoencoder"].path, SensorRules())
    assert report.counts()["flagged"] == 0 and report.findings == []
    assert report.rpm == pytest.approx(1797) and report.rpm_source == "declared"
