"""Split, threshold, models and explanations on real CWRU windows."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from core.errors import ConfigError, DataError
from inputs.vibration.explain import explain_windows, match_orders, top_deviations
from tests.fixtures.vibration import small_train_config
from training.vibration.config import AnomalyModelConfig, ModelName
from training.vibration.evaluate import evaluate_protocol
from training.vibration.models import MODELS, build_model
from training.vibration.threshold import calibrate, drift_margin, mad

MODEL_NAMES = ("isolation_forest", "autoencoder")


def test_normal_parts_are_ordered_in_time_and_share_no_sample(small_dataset):
    train, calibration, test = (
        small_dataset.select(p, normal=True)[0] for p in ("train", "calibration", "test")
    )
    length = train.length
    assert train.starts.max() + length <= calibration.starts.min()
    assert calibration.starts.max() + length <= test.starts.min()
    n = len(train.samples)
    assert calibration.starts.min() >= 0.45 * n - 1 and test.starts.min() >= 0.60 * n - 1
    assert all(p.part == "test" for p in small_dataset.parts if not p.normal)
    assert len(test.features) >= 100  # enough held-out windows that a 1 % rate is measurable


def test_calibrated_threshold_meets_its_target_on_calibration_scores(small_dataset):
    scores = (
        build_model(small_train_config().model)
        .fit(small_dataset.features("train"), None, None)
        .score(small_dataset.features("calibration"))
    )
    for target in (0.01, 0.05, 0.2):
        threshold = calibrate(scores, target)
        assert np.mean(scores > threshold.value) <= target
        assert np.mean(scores >= threshold.value) > target - 1 / len(scores)  # not needlessly high
    widened = calibrate(scores, 0.05, margin_mads=2.0)
    assert widened.value == pytest.approx(calibrate(scores, 0.05).value + 2.0 * mad(scores))
    with pytest.raises(DataError, match="cannot measure a 1.0% false-alarm rate"):
        calibrate(scores[:50], 0.01)


def test_drift_margin_is_what_the_later_slice_needed(small_dataset):
    rng = np.random.default_rng(0)
    earlier = rng.normal(0, 1, 2000)
    assert drift_margin(earlier, earlier, 0.01) == 0.0
    later = earlier + 3 * mad(earlier)  # everything drifted up by three MADs
    margin = drift_margin(earlier, later, 0.01)
    assert margin == pytest.approx(3.0)
    assert np.mean(later > calibrate(earlier, 0.01, margin).value) <= 0.01


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(ValidationError, match=r"'isolation_forest' or 'autoencoder'"):
        AnomalyModelConfig(name="lstm")
    lstm = AnomalyModelConfig.model_construct(name="lstm")  # past validation, e.g. built in code
    with pytest.raises(
        ConfigError, match=r"unknown anomaly model 'lstm'.*\['autoencoder', 'isolation_forest'\]"
    ):
        build_model(lstm)
    assert set(MODELS) == set(ModelName) == set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_trained_on_normal_only_alarm_on_faults(small_dataset, trained_models, name):
    trained = trained_models[name]
    report = evaluate_protocol(small_train_config(name), trained, small_dataset)
    assert report.test_normal_windows >= 100
    assert report.false_alarm_rate == pytest.approx(
        np.mean(np.asarray(report.normal_test_scores) > trained.threshold.value)
    )
    for record in report.records:
        assert record.auroc > 0.99, record
        assert record.detection_rate > 0.9, record
    assert trained.threshold.calibration_false_alarm_rate <= 0.01
    assert trained.train_windows == len(small_dataset.features("train"))


def test_explanation_names_bpfi_for_inner_race_and_bpfo_for_outer_race(small_dataset, trained_models):
    trained = trained_models["isolation_forest"]
    expected = {"IR_007": "BPFI", "OR_007_at6": "BPFO", "OR_021_at6": "BPFO"}
    for part in small_dataset.select("test", normal=False):
        windows = part.windows(np.flatnonzero(part.clean))
        matches = match_orders(
            windows,
            small_dataset.fs,
            part.rpm,
            ("DE",),
            small_train_config().features,
            trained.min_peak_ratio,
        )
        named = [m.order for m in matches]
        assert named.count(expected[part.label]) >= 0.9 * len(named), (part.label, named)
    part = small_dataset.select("test", normal=False)[0]  # inner race, 1797 rpm
    text = explain_windows(part.windows(np.array([0])), part.features[:1], trained.normal_mean, trained.normal_spread,
                           trained.feature_names, small_dataset.fs, part.rpm, ("DE",), small_train_config().features,
                           3, trained.min_peak_ratio)[0].text()  # fmt: skip
    assert text.startswith("inner-race signature at 16") and "x shaft; BPFI expected 162 Hz" in text
    assert "most unusual: DE: " in text and text.count("; DE: ") == 2 and " sd" not in text  # 3, in words


def test_normal_windows_rarely_show_a_defect_signature(small_dataset, trained_models):
    trained = trained_models["isolation_forest"]
    test = small_dataset.select("test", normal=True)[0]
    matches = match_orders(test.windows(np.flatnonzero(test.clean)), small_dataset.fs, test.rpm, ("DE",),
                           small_train_config().features, trained.min_peak_ratio)  # fmt: skip
    assert np.mean([m.order is not None for m in matches]) <= 0.02
    assert "no bearing order matched" in next(m.text() for m in matches if m.order is None)


def test_top_deviations_are_the_largest_in_units_of_normal_spread():
    mean, spread = np.array([0.0, 10.0, 5.0]), np.array([1.0, 2.0, 0.5])
    row = np.array([[3.0, 2.0, 5.25]])  # z = 3, -4, 0.5
    top = top_deviations(row, mean, spread, ["a", "b", "c"], 2)[0]
    assert [(d.feature, d.z) for d in top] == [("b", -4.0), ("a", 3.0)]


def test_deviations_read_as_words_not_feature_jargon():
    """Finding (issue 25): alarms were explained as "band_4050_4500hz -37.1 sd"."""
    from inputs.vibration.explain import in_words

    assert in_words("B1x.band_4050_4500hz", 0.568, -1.0) == "B1x: energy 4.0-4.5 kHz 37x above normal"
    assert in_words("DE.log_rms", -0.5, -0.2) == "DE: vibration level (RMS) 2.0x below normal"
    assert (
        in_words("DE.env_bpfi", 1.2, 0.4)
        == "DE: inner-race (BPFI) impact rhythm 15.8x the envelope floor (normal 2.5x)"
    )
    assert (
        in_words("DE.dominant_frequency_hz", 107.0, 4141.0)
        == "DE: strongest frequency 107 Hz (normal 4.1 kHz)"
    )
    assert in_words("DE.kurtosis", 9.5, 3.0) == "DE: impulsiveness (kurtosis) 9.5 (normal 3)"
