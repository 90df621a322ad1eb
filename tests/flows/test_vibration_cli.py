"""`shopfloor train anomaly` / `score anomaly` fail with one clear line, never a traceback."""

from __future__ import annotations

from tests.flows.test_cli import shopfloor


def test_unknown_anomaly_model_lists_the_valid_ones(tmp_path):
    out = shopfloor("train", "anomaly", "--data", str(tmp_path), "--set", "model.name=lstm")
    assert out.returncode == 2 and "Traceback" not in out.stderr + out.stdout
    assert "model.name" in out.stderr and "'isolation_forest' or 'autoencoder'" in out.stderr


def test_bad_anomaly_setting_names_the_key(tmp_path):
    out = shopfloor(
        "train", "anomaly", "--data", str(tmp_path), "--set", "threshold.target_false_alarm_rate=2"
    )
    assert out.returncode == 2 and "threshold.target_false_alarm_rate" in out.stderr
