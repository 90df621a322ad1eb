"""Loading raw sensor files: every format, declarations from file, sidecar or config, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import DataError
from inputs.vibration.signals import SensorDeclaration, load_signal, signal_files
from tests.fixtures.data import CWRU
from tests.fixtures.vibration import NORMAL, cwru, write_csv, write_npz


def test_shipped_cwru_file_loads_with_its_own_declarations():
    record = load_signal(NORMAL, SensorDeclaration(channels=("DE",), units="g"))
    assert record.samples.shape == (60985, 1) and record.samples.dtype == np.float64
    assert record.fs == 12000 and record.rpm == 1796 and record.label == "normal"
    assert record.channels == ("DE",) and record.channels_declared and record.units == "g"
    assert record.metadata["source_file"] == "97.mat"


def test_csv_with_sidecar_and_parquet_with_metadata_give_the_same_record(tmp_path):
    x = cwru("OR_007_at6_0hp")["signal"][:5000].astype(np.float64)
    times = np.arange(len(x)) / 12000
    declarations = {"fs": 12000, "rpm": 1796.0, "units": "g", "label": "OR_007"}
    from_csv = load_signal(write_csv(tmp_path / "run.csv", x, times, declarations))
    table = pa.Table.from_pandas(pd.DataFrame({"time": times, "DE": x}), preserve_index=False)
    table = table.replace_schema_metadata({b"shopfloor": json.dumps(declarations).encode()})
    pq.write_table(table, tmp_path / "run.parquet")
    from_parquet = load_signal(tmp_path / "run.parquet")
    for record in (from_csv, from_parquet):
        np.testing.assert_allclose(record.samples[:, 0], x)
        np.testing.assert_allclose(record.timestamps, times)
        assert (record.fs, record.rpm, record.units, record.channels, record.label) == (
            12000,
            1796.0,
            "g",
            ("DE",),
            "OR_007",
        )


def test_missing_sample_rate_names_the_file_and_what_to_add(tmp_path):
    path = write_npz(tmp_path / "no_rate.npz", cwru("normal")["signal"][:1000])
    with pytest.raises(DataError, match=r"no_rate.npz: sample_rate: none declared.*declared.sample_rate"):
        load_signal(path)
    assert load_signal(path, SensorDeclaration(sample_rate=12000)).fs == 12000


def test_file_contradicting_the_declaration_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"sample_rate: the file says 12000 but the declaration says 48000"):
        load_signal(NORMAL, SensorDeclaration(sample_rate=48000))


def test_channel_names_must_match_the_columns(tmp_path):
    path = write_npz(tmp_path / "two.npz", np.zeros((100, 2)), fs=12000)
    with pytest.raises(DataError, match=r"channels: 1 names \['DE'\] declared for 2 data columns"):
        load_signal(path, SensorDeclaration(channels=("DE",)))
    undeclared = load_signal(path)
    assert undeclared.channels == ("ch0", "ch1") and not undeclared.channels_declared


def test_folder_listing_and_unknown_suffix(tmp_path):
    assert len(signal_files(CWRU)) == 37
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no sensor files"):
        signal_files(tmp_path)
    with pytest.raises(DataError, match="unsupported file type"):
        load_signal(tmp_path / "notes.txt")
