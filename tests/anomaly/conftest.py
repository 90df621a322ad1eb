"""Small slices of the real CWRU records, and a bad-input corpus made from them.

Every corrupt file starts as real drive-end vibration; one thing is broken in each, at a known
place, so each test can ask for the specific finding and the sample range it names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import CWRU
from training.anomaly.config import (
    AnomalyModelConfig,
    AnomalyTrainConfig,
    AutoencoderConfig,
    IsolationForestConfig,
    SplitConfig,
)
from training.anomaly.dataset import AnomalyDataset, build_dataset
from training.anomaly.train import AnomalyTrainResult, train_anomaly_model

FS = 12000
NORMAL = CWRU / "cwru12k_DE_normal_0hp.npz"
SMALL_FAULTS = ("IR_007_0hp", "OR_007_at6_0hp", "OR_021_at6_0hp", "B_021_0hp", "IR_021_2hp")


def cwru(label: str) -> dict:
    """One shipped record as a dict of arrays and scalars (signal float32 at 12 kHz, rpm, ...)."""
    path = NORMAL if label == "normal" else CWRU / f"cwru12k_DE_{label}.npz"
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def write_npz(path: Path, signal: np.ndarray, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, signal=signal, **extra)
    return path


def write_csv(path: Path, signal: np.ndarray, times: np.ndarray, declarations: dict) -> Path:
    """A CSV as a data logger writes it (timestamp, DE) with its declarations in a sidecar JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"timestamp": times, "DE": signal}).to_csv(path, index=False)
    path.with_name(path.name + ".json").write_text(json.dumps(declarations))
    return path


@pytest.fixture(scope="session")
def bad_corpus(tmp_path_factory) -> dict[str, Path]:
    """Corrupted copies of real CWRU data; see the module docstring."""
    root = tmp_path_factory.mktemp("bad_corpus")
    ir = cwru("IR_007_0hp")
    x = ir["signal"][:24000].astype(np.float64)  # 2 s of a real inner-race record
    meta = {"fs": 12000, "rpm": float(ir["rpm"]), "units": "g", "channels": np.array(["DE"])}
    nan = x.copy()
    nan[6000:6300] = np.nan
    clipped = x.copy()  # an overload: 1000 samples 4x louder, the sensor saturates at 1.2x the normal peak
    clipped[12000:13000] *= 4
    clipped = np.clip(clipped, -1.2 * np.abs(x).max(), 1.2 * np.abs(x).max())
    times = np.arange(len(x)) / FS
    duplicate = times.copy()
    duplicate[9001:9011] = duplicate[9000]  # a logger that stalled for 10 samples
    gap = np.concatenate([times[:15000], times[15000:] + 0.05])  # 50 ms of samples lost
    declarations = {"fs": 12000, "rpm": float(ir["rpm"]), "units": "g"}
    return {
        "nan_burst": write_npz(root / "nan_burst.npz", nan, **meta),
        "clipped": write_npz(root / "clipped.npz", clipped, **meta),
        "duplicate_timestamps": write_csv(root / "duplicate_timestamps.csv", x, duplicate, declarations),
        "gap": write_csv(root / "gap.csv", x, gap, declarations),
        # timestamps of a 48 kHz logger in a file that claims 12 kHz
        "wrong_rate_timestamps": write_csv(
            root / "wrong_rate.csv", x, np.arange(len(x)) / 48000, declarations
        ),
        # the real 48 kHz CWRU normal record, declared as 12 kHz (the mistake the data README describes)
        "wrong_rate_native": write_npz(
            root / "native_48k_as_12k.npz", cwru("normal")["signal_native"], **(meta | {"rpm": 1796.0})
        ),
        "declared_48k": write_npz(root / "declared_48k.npz", x, **(meta | {"fs": 48000})),
        "clean": write_npz(root / "clean.npz", x, **meta),
    }


def small_train_config(model: str = "isolation_forest") -> AnomalyTrainConfig:
    """Protocol defaults with small models: 50 trees, a 60-epoch autoencoder, sparser fault windows."""
    return AnomalyTrainConfig(
        model=AnomalyModelConfig(
            name=model,
            isolation_forest=IsolationForestConfig(n_estimators=50),
            autoencoder=AutoencoderConfig(epochs=60),
        ),
        split=SplitConfig(fault_hop=2048),
    )


@pytest.fixture(scope="session")
def small_dataset() -> AnomalyDataset:
    """The normal record (split in time) and three fault records: inner race, outer race 0.007 and 0.021 in."""
    from data_checks.config import SensorDeclaration, SensorRules
    from data_checks.sensor_checks import check_records
    from data_checks.sensor_data import load_signal

    labels = ("IR_007_0hp", "OR_007_at6_0hp", "OR_021_at6_0hp")
    paths = [NORMAL] + [CWRU / f"cwru12k_DE_{label}.npz" for label in labels]
    records = [load_signal(p, SensorDeclaration(channels=("DE",), units="g")) for p in paths]
    return build_dataset(check_records(records, SensorRules()), small_train_config(), ("normal",))


@pytest.fixture(scope="session")
def trained_models(small_dataset) -> dict[str, AnomalyTrainResult]:
    return {
        name: train_anomaly_model(small_train_config(name), small_dataset)
        for name in ("isolation_forest", "autoencoder")
    }
