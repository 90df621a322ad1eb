"""Raw accelerometer files (.npz, .csv, .parquet) -> one typed `SensorRecord`.

Where declarations live:
- .npz: arrays `signal` (N,) or (N, C) and optional `timestamps` (N,); scalars `fs`, `rpm`,
  `units`, `sensor_range`, `label`, ... and `channels` (C,) as strings. (The CWRU files use this layout.)
- .csv / .parquet: one numeric column per channel (the header is the channel name) and an optional
  `timestamp`/`time` column (seconds, or date-times); .parquet may carry the declarations as
  JSON under the schema metadata key `shopfloor`.
- any format: a sidecar `<file>.json` (e.g. `run3.csv.json`) with the same keys.
The caller's `SensorDeclaration` fills in what the file leaves out; a file that contradicts it is
refused. Nothing is checked for plausibility here: that is sensor_checks' job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data_checks.config import SensorDeclaration
from data_checks.errors import DataError

SUFFIXES = (".npz", ".csv", ".parquet")
SIGNAL_KEYS = ("signal", "samples", "data")
TIME_COLUMNS = ("timestamp", "timestamps", "time", "t")
RATE_KEYS = ("fs", "sample_rate")


@dataclass(frozen=True)
class SensorRecord:
    """One recording: samples (N, C) float64, at `fs` Hz, with what was declared about it."""

    path: Path
    samples: np.ndarray
    fs: float
    channels: tuple[str, ...]
    units: str | None
    timestamps: np.ndarray | None = None  # (N,) seconds, as recorded (not re-based)
    rpm: float | None = None
    sensor_range: float | None = None
    channels_declared: bool = True
    label: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    def where(self, start: int, stop: int) -> str:
        """A sample range as a person finds it: samples, seconds and, for CSV, the file's line numbers."""
        text = f"samples {start}-{stop - 1} (t={start / self.fs:.3f}-{(stop - 1) / self.fs:.3f} s)"
        if self.path.suffix == ".csv":
            text += f", CSV lines {start + 2}-{stop + 1}"
        return text


def _scalar(value: object) -> object:
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    with np.load(path, allow_pickle=False) as data:
        key = next((k for k in SIGNAL_KEYS if k in data.files), None)
        if key is None:
            raise DataError(
                f"{path}: no signal array; expected one of {list(SIGNAL_KEYS)}, found {data.files}"
            )
        samples = np.asarray(data[key], dtype=np.float64)
        time_key = next((k for k in TIME_COLUMNS if k in data.files), None)
        times = np.asarray(data[time_key], dtype=np.float64) if time_key else None
        meta = {k: _scalar(data[k]) for k in data.files if k not in (key, time_key) and data[k].size <= 64}
    return samples, times, meta


def _read_table(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    meta: dict = {}
    try:
        if path.suffix == ".csv":
            frame = pd.read_csv(path)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(b"shopfloor")
            meta = json.loads(raw) if raw else {}
            frame = table.to_pandas()
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read as {path.suffix[1:]}: {err}") from err
    time_col = next((c for c in frame.columns if str(c).lower() in TIME_COLUMNS), None)
    times = None
    if time_col is not None:
        column = frame.pop(time_col)
        if pd.api.types.is_numeric_dtype(column):
            times = column.to_numpy(dtype=np.float64)
        else:  # date-times: seconds since the first sample
            stamps = pd.to_datetime(column)
            times = (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy()
    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise DataError(
            f"{path}: columns {text} are not numeric; each column other than the timestamp is a channel"
        )
    meta.setdefault("channels", [str(c) for c in frame.columns])
    return frame.to_numpy(dtype=np.float64), times, meta


def _merge(path: Path, key: str, in_file: object, declared: object) -> object:
    if in_file is None or declared is None:
        return declared if in_file is None else in_file
    same = (
        np.allclose(float(in_file), float(declared)) if isinstance(declared, float) else in_file == declared
    )
    if not same:
        raise DataError(
            f"{path}: the file declares {key}={in_file!r} but the configuration declares {declared!r}; "
            "fix whichever is wrong (a silent choice would score the wrong signal)"
        )
    return in_file


def _first(meta: dict, keys: tuple[str, ...]) -> object:
    return next((meta[k] for k in keys if meta.get(k) is not None), None)


def load_signal(path: Path, declared: SensorDeclaration | None = None) -> SensorRecord:
    """Read one file; raises DataError naming the file and the missing or conflicting declaration."""
    path, declared = Path(path), declared or SensorDeclaration()
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; expected one of {list(SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    samples, times, meta = _read_npz(path) if path.suffix == ".npz" else _read_table(path)
    sidecar = path.with_name(path.name + ".json")
    if sidecar.is_file():
        meta |= json.loads(sidecar.read_text())
    samples = samples[:, None] if samples.ndim == 1 else samples
    if samples.ndim != 2 or len(samples) == 0:
        raise DataError(f"{path}: expected samples shaped (N,) or (N, channels), found {samples.shape}")
    fs = _merge(path, "sample_rate", _first(meta, RATE_KEYS), declared.sample_rate)
    if fs is None:
        raise DataError(
            f"{path}: no sample rate declared; add `fs` to the file (or {sidecar.name}) or set the data "
            "section's sample_rate; it is never guessed"
        )
    in_file_channels = meta.get("channels")
    names = _merge(path, "channels", tuple(in_file_channels) if in_file_channels else None, declared.channels)
    if names is not None and len(names) != samples.shape[1]:
        raise DataError(
            f"{path}: {len(names)} channel names {list(names)} for {samples.shape[1]} data columns"
        )
    if times is not None and len(times) != len(samples):
        raise DataError(f"{path}: {len(times)} timestamps for {len(samples)} samples")
    rpm, full_scale = _first(meta, ("rpm",)), _first(meta, ("sensor_range",))
    return SensorRecord(
        path=path,
        samples=samples,
        fs=float(fs),
        channels=tuple(names) if names else tuple(f"ch{i}" for i in range(samples.shape[1])),
        units=_merge(path, "units", meta.get("units"), declared.units),
        timestamps=times,
        rpm=float(_merge(path, "rpm", rpm, declared.rpm)) if (rpm or declared.rpm) else None,
        sensor_range=_merge(path, "sensor_range", full_scale, declared.sensor_range),
        channels_declared=names is not None,
        label=str(meta.get("label", path.stem)),
        metadata={k: str(v) for k, v in meta.items() if not isinstance(v, list)},
    )


def signal_files(source: Path) -> list[Path]:
    """The sensor files in a folder (sorted), or the one file given."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError(f"data source {source} does not exist; pass a folder of .npz/.csv/.parquet files")
    files = sorted(p for p in source.iterdir() if p.suffix in SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{source}: no sensor files; expected {', '.join(SUFFIXES)} files in it")
    return files
