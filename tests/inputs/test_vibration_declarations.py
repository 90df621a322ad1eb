"""A user's own machine (issue 25): declarations checked from file headers, bearings by name or numbers."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from pydantic import ValidationError

from benchmarks.second_machine import make_second_machine
from core.config import load_config
from core.errors import DataError
from inputs.vibration.bearing import BearingGeometry, defect_orders
from inputs.vibration.signals import SensorDeclaration, check_declarations, signal_files
from tests.fixtures.data import REPO
from tests.flows.test_cli import shopfloor


@pytest.fixture(scope="module")
def pump7(tmp_path_factory):
    return make_second_machine(tmp_path_factory.mktemp("pump7"), ("normal", "IR_007_0hp"))


def test_a_wrong_channel_declaration_is_one_line_before_anything_slow_starts(pump7):
    """Finding: the CWRU defaults (channel DE) on a B1x/B1y machine failed after ~50-100 s of Prefect
    start-up with 82 lines and two tracebacks."""
    started = time.monotonic()
    out = shopfloor("train", "anomaly", "--data", str(pump7))  # no --config: the CWRU declarations
    assert time.monotonic() - started < 20  # the interpreter start on 2 busy cores; was 48-100 s
    assert out.returncode == 2 and "Traceback" not in out.stdout + out.stderr
    [line] = out.stderr.strip().splitlines()
    assert (
        "pump7_IR_007_0hp.npz: channels:" in line and "('B1x', 'B1y')" in line and "declared.channels" in line
    )


@pytest.mark.parametrize(
    ("declared", "field"),
    [
        ({"channels": ("B1x", "B1y"), "sample_rate": 12000}, "sample_rate"),
        ({"channels": ("B1x", "B1y"), "units": "g"}, "units"),
        ({"channels": ("B1x", "B1y", "B2x")}, "channels"),
    ],
)
def test_each_wrong_declaration_names_the_file_and_the_field(pump7, declared, field):
    with pytest.raises(DataError, match=rf"pump7_\w+\.npz: {field}:"):
        check_declarations(signal_files(pump7), SensorDeclaration(**declared))
    check_declarations(
        signal_files(pump7), SensorDeclaration(channels=("B1x", "B1y"), sample_rate=20000, units="m/s^2")
    )


def test_csv_headers_are_checked_without_reading_the_samples(tmp_path):
    path = tmp_path / "logger.csv"
    path.write_text("time,B1x,B1y,B2x\n0,0.1,0.2,0.3\n")
    path.with_name("logger.csv.json").write_text(json.dumps({"fs": 20000}))
    with pytest.raises(DataError, match=r"logger.csv: channels: the file says \('B1x', 'B1y', 'B2x'\)"):
        check_declarations([path], SensorDeclaration(channels=("B1x", "B1y")))
    path.with_name("logger.csv.json").unlink()
    with pytest.raises(DataError, match=r"logger.csv: sample_rate: none declared"):
        check_declarations([path], SensorDeclaration())


def test_bearing_by_name_or_by_numbers():
    """Finding: the bearing was the CWRU one unless the user knew to overwrite four numbers."""
    fan_end = defect_orders(BearingGeometry(name="SKF 6203-2RS"))  # CWRU's published fan-end orders
    assert fan_end["BPFI"] == pytest.approx(4.9469, abs=1e-3) and fan_end["BPFO"] == pytest.approx(
        3.0530, abs=1e-3
    )
    assert BearingGeometry(n_balls=8, ball_diameter=6.75, pitch_diameter=28.5).name == "custom"
    with pytest.raises(ValidationError, match=r"unknown bearing 'FAG 6305'.*SKF 6203-2RS.*n_balls"):
        BearingGeometry(name="FAG 6305")


def test_the_second_machine_config_declares_everything_the_defaults_assume():
    from flows.vibration.config import AnomalyJobConfig

    cfg = load_config(AnomalyJobConfig, REPO / "configs" / "anomaly-pump7.yaml")
    assert cfg.data.declared.channels == ("B1x", "B1y") and cfg.data.declared.sample_rate == 20000
    assert cfg.features.bearing.name == "NSK 6205" and "bearing" in cfg.features.model_fields_set
    orders, cwru = defect_orders(cfg.features.bearing), defect_orders(BearingGeometry())
    assert all(
        abs(orders[k] / cwru[k] - 1) < cfg.features.order_tolerance for k in orders
    )  # same bearing size


def test_training_without_a_bearing_says_which_one_it_assumes(pump7, capsys):
    from flows.cli.vibration import preflight
    from flows.vibration.config import AnomalyJobConfig

    preflight(
        load_config(
            AnomalyJobConfig, None, ["data.declared.channels=[B1x,B1y]", "data.declared.units=m/s^2"]
        ),
        pump7,
    )
    assert "no bearing declared" in capsys.readouterr().err
    preflight(load_config(AnomalyJobConfig, REPO / "configs" / "anomaly-pump7.yaml"), pump7)
    assert "no bearing declared" not in capsys.readouterr().err


def test_derived_data_is_the_cwru_record_at_20_khz(pump7):
    with np.load(pump7 / "pump7_normal.npz") as data:
        assert data["signal"].shape == (101642, 2) and int(data["fs"]) == 20000
        assert list(data["channels"]) == ["B1x", "B1y"]
