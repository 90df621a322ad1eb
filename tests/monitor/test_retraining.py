"""Issue 23: what a drifted vibration device gives its retraining run. Windows the model alarmed on
(beyond its normal false-alarm rate) never enter training; rows join the normal data split in time,
and a model trains on them."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import DataError
from edge.telemetry import TelemetryStore, TelemetryWindow
from monitor.retraining import device_normal_rows
from training.vibration.dataset import add_device_rows
from training.vibration.train import train_anomaly_model


def _window(i: int, alarms: int, value: float) -> TelemetryWindow:
    rows = [[value + i, float(j)] for j in range(32)]
    return TelemetryWindow(window_id=f"w{i}", model="bearing-anomaly", version="1", kind="vibration-anomaly",
                           started="t", ended="t", items=64, scores=[0.1] * 64, alarms=alarms, features=rows)  # fmt: skip


def test_only_alarm_free_windows_of_that_device_are_used(tmp_path):
    store = TelemetryStore(tmp_path / "telemetry.db")
    for i in range(6):
        store.add("motor-b", _window(i, alarms=3 if i % 2 else 0, value=100.0))
        store.add("motor-a", _window(i, alarms=0, value=500.0))
    normal = device_normal_rows(store, "motor-b", "bearing-anomaly", min_rows=10)
    assert normal.windows_used == 3 and normal.windows_alarmed == 3
    assert sorted(set(normal.rows[:, 0])) == [100.0, 102.0, 104.0]  # windows 0, 2, 4 of motor-b only


def test_a_false_alarm_or_two_in_64_items_is_normal_operation_when_the_rate_is_known(tmp_path):
    """CI finding: with "no alarm at all", a normal motor at 1.4 % false alarms kept 2 windows of 8, and
    the retraining on so few rows failed its gate. 1-3 alarms in 64 are what that rate gives; 5 are not."""
    store = TelemetryStore(tmp_path / "telemetry.db")
    for i, alarms in enumerate([1, 2, 0, 3, 5, 9]):
        store.add("motor-b", _window(i, alarms=alarms, value=100.0))
    normal = device_normal_rows(store, "motor-b", "bearing-anomaly", lambda version: 0.014, min_rows=10)
    assert normal.windows_used == 4 and normal.windows_alarmed == 2
    assert sorted(set(normal.rows[:, 0])) == [100.0, 101.0, 102.0, 103.0]


def test_a_device_whose_windows_all_alarmed_gives_nothing_and_says_so(tmp_path):
    store = TelemetryStore(tmp_path / "telemetry.db")
    for i in range(4):
        store.add("motor-b", _window(i, alarms=1, value=0.0))
    with pytest.raises(
        DataError,
        match=r"motor-b: 0 normal feature rows .* \(4 of its last 4 windows alarmed beyond the normal rate\)",
    ):
        device_normal_rows(store, "motor-b", "bearing-anomaly")


def test_device_rows_are_split_in_time_and_a_model_trains_on_them(small_dataset):
    from tests.fixtures.vibration import small_train_config

    cfg = small_train_config()
    rows = small_dataset.features("test", True)[:200] * 1.05  # held-out normal, a remounted sensor
    combined = add_device_rows(small_dataset, rows, "telemetry:motor-b", cfg)
    added = [p for p in combined.parts if p.path == "telemetry:motor-b"]
    assert [(p.part, len(p.features)) for p in added] == [("train", 90), ("calibration", 30), ("test", 80)]
    assert np.array_equal(np.concatenate([p.features for p in added]), rows)
    trained = train_anomaly_model(cfg, combined)
    assert trained.train_windows == len(small_dataset.features("train")) + 90
    with pytest.raises(DataError, match="feature rows of width 3"):
        add_device_rows(small_dataset, rows[:, :3], "telemetry:motor-b", cfg)
