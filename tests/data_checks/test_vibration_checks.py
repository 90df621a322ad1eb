"""Each corruption of real CWRU data gets its own finding, naming the file, rule and sample range."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import DataCheckFailed
from data_checks.findings import Severity
from data_checks.vibration.checks import check_alignment, check_record, check_records
from data_checks.vibration.config import SensorRules
from data_checks.vibration.gate import check_sensor_data
from inputs.vibration.signals import SensorDeclaration, SensorRecord, load_signal
from tests.fixtures.data import CWRU
from tests.fixtures.vibration import SMALL_FAULTS, cwru

RULES = SensorRules()
DECLARED = SensorDeclaration(channels=("DE",), units="g")


@pytest.fixture(scope="module")
def checked_corpus(bad_corpus):
    records = [load_signal(path, DECLARED) for path in bad_corpus.values()]
    return dict(zip(bad_corpus, check_records(records, RULES, expected_fs=12000), strict=True))


def only(checked, rule):
    found = [f for f in checked.findings if f.rule == rule]
    assert len(found) == 1, [f.describe() for f in checked.findings]
    return found[0]


def test_clean_real_records_pass_every_rule():
    records = [load_signal(CWRU / f"cwru12k_DE_{label}.npz", DECLARED) for label in SMALL_FAULTS]
    records.append(load_signal(CWRU / "cwru12k_DE_normal_0hp.npz", DECLARED))
    for checked in check_records(records, RULES, expected_fs=12000, expected_channels=1):
        assert checked.findings == [] and checked.usable and checked.bad_samples == {}


def test_nan_burst_is_named_with_its_samples_and_flags_only_its_windows(checked_corpus):
    checked = checked_corpus["nan_burst"]
    finding = only(checked, "nan_burst")
    assert finding.severity == Severity.ERROR and finding.path.endswith("nan_burst.npz")
    assert "samples 6000-6299" in finding.message and "300 sample(s)" in finding.message
    starts = np.arange(0, 24000 - 2048 + 1, 512)
    flags = checked.window_flags(starts, 2048)
    touching = (starts + 2048 > 6000) & (starts < 6300)
    assert [bool(f) for f in flags] == touching.tolist()
    assert checked.usable  # the rest of the record is still good


def test_clipped_segment_is_found_inside_the_overload(checked_corpus):
    finding = only(checked_corpus["clipped"], "clipping")
    first, last = (int(s) for s in finding.message.split("samples ")[1].split(" ")[0].split("-"))
    assert 12000 <= first < last < 13000


def test_duplicate_timestamps_name_the_csv_lines(checked_corpus):
    finding = only(checked_corpus["duplicate_timestamps"], "duplicate_timestamps")
    assert "samples 9001-9010" in finding.message and "CSV lines 9003-9012" in finding.message


def test_gap_reports_where_and_how_long(checked_corpus):
    finding = only(checked_corpus["gap"], "timestamp_gap")
    assert "samples 15000-15000" in finding.message and "time jumps by 50.08 ms" in finding.message


@pytest.mark.parametrize(
    ("name", "rule", "text"),
    [
        (
            "wrong_rate_timestamps",
            "wrong_rate",
            "timestamps are spaced at 48000 Hz, the file declares 12000 Hz",
        ),
        ("declared_48k", "wrong_rate", "the record is at 48000 Hz, the model expects 12000 Hz"),
        ("wrong_rate_native", "spectral_occupancy", "low_band_power=0.94"),
    ],
)
def test_wrong_sample_rate_makes_the_record_unusable(checked_corpus, name, rule, text):
    checked = checked_corpus[name]
    assert text in only(checked, rule).message
    assert not checked.usable


def test_undeclared_units_and_channels_and_wrong_count(bad_corpus):
    record = load_signal(bad_corpus["clean"])  # the file declares units "g" and channel "DE"
    bare = SensorRecord(record.path, record.samples, record.fs, ("ch0",), None, channels_declared=False)
    checked = check_record(bare, RULES, expected_channels=2)
    assert {f.rule for f in checked.findings} == {"units_declared", "channels_declared", "channel_count"}
    assert not checked.usable


def test_time_alignment_reports_the_measured_lag():
    x = cwru("IR_007_0hp")["signal"][:24000].astype(np.float64)
    rng = np.random.default_rng(0)
    fe = np.roll(x, 30) + 0.05 * rng.standard_normal(len(x))  # a second sensor 30 samples (2.5 ms) late
    record = SensorRecord(CWRU / "aligned.npz", np.stack([x, fe], 1), 12000.0, ("DE", "FE"), "g")
    finding = only(check_record(record, RULES), "time_alignment")
    assert (
        finding.severity == Severity.WARN
        and "'channel FE' lags 'channel DE' by 30 samples (2.50 ms" in finding.message
    )
    aligned = SensorRecord(record.path, np.stack([x, x], 1), 12000.0, ("DE", "FE"), "g")
    assert check_record(aligned, RULES).findings == []
    # the same two sensors in two files
    de = SensorRecord(CWRU / "de.npz", x[:, None], 12000.0, ("DE",), "g")
    fe = SensorRecord(CWRU / "fe.npz", fe[:, None], 12000.0, ("FE",), "g")
    (two_files,) = check_alignment(de, fe, RULES)
    assert "'fe.npz:FE' lags 'de.npz:DE' by 30 samples" in two_files.message and two_files.path.endswith(
        "fe.npz"
    )
    assert check_alignment(fe, de, RULES)[0].message.count("by -30 samples") == 1


def test_gate_stops_on_a_record_level_error_and_names_it(bad_corpus, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("clean", "wrong_rate_native"):
        (folder / bad_corpus[name].name).write_bytes(bad_corpus[name].read_bytes())
    with pytest.raises(DataCheckFailed, match=r"native_48k_as_12k.npz.*spectral_occupancy"):
        check_sensor_data(folder, DECLARED, RULES, tmp_path / "out")
    assert (tmp_path / "out" / "findings.csv").exists()


def test_gate_stops_a_mostly_broken_record(tmp_path):
    from tests.fixtures.vibration import write_npz

    x = cwru("normal")["signal"][:24000].astype(np.float64)
    x[2000:20000] = np.nan
    write_npz(tmp_path / "data" / "dead.npz", x, fs=12000, rpm=1796.0)
    with pytest.raises(DataCheckFailed, match=r"dead.npz.*\[bad_fraction\] 75% of the samples"):
        check_sensor_data(tmp_path / "data", DECLARED, RULES, tmp_path / "out")
