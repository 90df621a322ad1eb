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

import csv
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from core.errors import DataError

SUFFIXES = (".npz", ".csv", ".parquet")
SIGNAL_KEYS = ("signal", "samples", "data")
TIME_COLUMNS = ("timestamp", "timestamps", "time", "t")
RATE_KEYS = ("fs", "sample_rate")


class SensorDeclaration(BaseModel):
    """What a raw sensor file must declare; these fill in what the file itself leaves out.

    A value in the file wins only when it agrees: a file saying 48000 Hz against a declared 12000 Hz
    is an error, not a silent choice.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_rate: float | None = Field(None, gt=0)  # Hz
    channels: tuple[str, ...] | None = None  # names, in column order
    units: str | None = None  # e.g. "g" or "m/s^2"; one unit for every channel
    rpm: float | None = Field(None, gt=0)  # shaft speed, for the bearing defect orders
    sensor_range: float | None = Field(None, gt=0)  # full scale in `units`; None: detect flat tops


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


def _csv_columns(path: Path) -> dict[str, np.ndarray]:
    """Columns of a CSV with a header row: float where every cell parses (empty cells are NaN), text otherwise."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty CSV; expected a header row naming the channels")
        cells = list(zip(*reader, strict=False)) or [()] * len(header)
    columns = {}
    for name, values in zip(header, cells, strict=True):
        text = np.array(values, dtype=object)
        try:
            columns[name.strip()] = np.array([v if v.strip() else "nan" for v in values], dtype=np.float64)
        except ValueError:
            columns[name.strip()] = text
    return columns


def _parquet_columns(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading .parquet needs pyarrow (pip install pyarrow), or convert it to .csv/.npz"
        ) from None
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"shopfloor")
    columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    return columns, json.loads(raw) if raw else {}


def _seconds(column: np.ndarray) -> np.ndarray:
    """A time column as seconds: numbers as they are, date-times as seconds since the first sample."""
    if np.issubdtype(column.dtype, np.number):
        return column.astype(np.float64)
    with (
        warnings.catch_warnings()
    ):  # "no explicit representation of timezones": offsets are applied, then dropped
        warnings.simplefilter("ignore", UserWarning)
        stamps = np.asarray(column, dtype="datetime64[ns]")
    return (stamps - stamps[0]).astype(np.int64) / 1e9


def _read_table(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """.csv / .parquet: one numeric column per channel, an optional time column (see the module docstring)."""
    meta: dict = {}
    try:
        if path.suffix == ".csv":
            columns = _csv_columns(path)
        else:
            columns, meta = _parquet_columns(path)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read as {path.suffix[1:]}: {err}") from err
    time_col = next((c for c in columns if str(c).lower() in TIME_COLUMNS), None)
    times = None
    if time_col is not None:
        try:
            times = _seconds(columns.pop(time_col))
        except ValueError as err:
            raise DataError(f"{path}: column {time_col!r} is neither seconds nor date-times: {err}") from err
    text = [
        c
        for c, values in columns.items()
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool)
    ]
    if text:
        raise DataError(
            f"{path}: columns {text} are not numeric; each column other than the timestamp is a channel"
        )
    meta.setdefault("channels", [str(c) for c in columns])
    samples = np.stack([v.astype(np.float64) for v in columns.values()], 1) if columns else np.empty((0, 0))
    return samples, times, meta


def _merge(path: Path, key: str, in_file: object, declared: object) -> object:
    if in_file is None or declared is None:
        return declared if in_file is None else in_file
    same = (
        np.allclose(float(in_file), float(declared)) if isinstance(declared, float) else in_file == declared
    )
    if not same:
        raise DataError(
            f"{path}: {key}: the file says {in_file!r} but the declaration says {declared!r}; declare what the "
            f"file has (the data section's declared.{key}) or fix the file (a silent choice would score the wrong signal)"
        )
    return in_file


def _first(meta: dict, keys: tuple[str, ...]) -> object:
    return next((meta[k] for k in keys if meta.get(k) is not None), None)


def _read_meta(path: Path, meta: dict) -> dict:
    sidecar = path.with_name(path.name + ".json")
    if sidecar.is_file():
        try:
            meta |= json.loads(sidecar.read_text())
        except ValueError as err:
            raise DataError(f"{sidecar}: not valid JSON ({err}); fix or remove it") from err
    return meta


def _declarations(path: Path, n_columns: int, meta: dict, declared: SensorDeclaration) -> dict:
    """The file's own declarations merged with `declared`; raises DataError naming the file and the field."""
    fs = _merge(path, "sample_rate", _first(meta, RATE_KEYS), declared.sample_rate)
    if fs is None:
        raise DataError(
            f"{path}: sample_rate: none declared; add `fs` to the file (or {path.name}.json) or set the data "
            "section's declared.sample_rate; it is never guessed"
        )
    in_file_channels = meta.get("channels")
    names = _merge(path, "channels", tuple(in_file_channels) if in_file_channels else None, declared.channels)
    if names is not None and len(names) != n_columns:
        raise DataError(
            f"{path}: channels: {len(names)} names {list(names)} declared for {n_columns} data columns; "
            "declare one name per column, in column order"
        )
    rpm, full_scale = _first(meta, ("rpm",)), _first(meta, ("sensor_range",))
    return {
        "fs": float(fs),
        "channels": tuple(names) if names else tuple(f"ch{i}" for i in range(n_columns)),
        "units": _merge(path, "units", meta.get("units"), declared.units),
        "rpm": float(_merge(path, "rpm", rpm, declared.rpm)) if (rpm or declared.rpm) else None,
        "sensor_range": _merge(path, "sensor_range", full_scale, declared.sensor_range),
        "channels_declared": names is not None,
    }


def load_signal(path: Path, declared: SensorDeclaration | None = None) -> SensorRecord:
    """Read one file; raises DataError naming the file and the missing or conflicting declaration."""
    path, declared = Path(path), declared or SensorDeclaration()
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; expected one of {list(SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    samples, times, meta = _read_npz(path) if path.suffix == ".npz" else _read_table(path)
    meta = _read_meta(path, meta)
    samples = samples[:, None] if samples.ndim == 1 else samples
    if samples.ndim != 2 or len(samples) == 0:
        raise DataError(f"{path}: expected samples shaped (N,) or (N, channels), found {samples.shape}")
    fields = _declarations(path, samples.shape[1], meta, declared)
    if times is not None and len(times) != len(samples):
        raise DataError(f"{path}: {len(times)} timestamps for {len(samples)} samples")
    return SensorRecord(
        path=path, samples=samples, timestamps=times, label=str(meta.get("label", path.stem)),
        metadata={k: str(v) for k, v in meta.items() if not isinstance(v, list)}, **fields,
    )  # fmt: skip


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


def _npz_header(path: Path) -> tuple[int, dict]:
    """Data columns and scalar declarations of an .npz, reading only the small arrays and the signal's header."""
    import zipfile

    with zipfile.ZipFile(path) as archive, np.load(path, allow_pickle=False) as data:
        key = next((k for k in SIGNAL_KEYS if k in data.files), None)
        if key is None:
            raise DataError(
                f"{path}: no signal array; expected one of {list(SIGNAL_KEYS)}, found {data.files}"
            )
        with archive.open(f"{key}.npy") as handle:
            version = np.lib.format.read_magic(handle)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape = read(handle)[0]
        small = [k for k in data.files if k != key and k not in TIME_COLUMNS]
        meta = {k: _scalar(data[k]) for k in small if archive.getinfo(f"{k}.npy").file_size <= 4096}
    return (shape[1] if len(shape) == 2 else 1), meta


def _table_header(path: Path) -> tuple[int, dict]:
    """Data columns and declarations of a .csv (its header row) or .parquet (its schema)."""
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            header = [c.strip() for c in next(csv.reader(handle), [])]
        meta: dict = {}
    else:
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        header, raw = list(schema.names), (schema.metadata or {}).get(b"shopfloor")
        meta = json.loads(raw) if raw else {}
    channels = [c for c in header if c.lower() not in TIME_COLUMNS]
    meta.setdefault("channels", channels)
    return len(channels), meta


def check_declarations(files: list[Path], declared: SensorDeclaration) -> None:
    """Every file's declarations against `declared` from headers only (milliseconds a file), so a wrong
    sample rate, channel list or unit fails before any slow stage starts; DataError names file and field."""
    for path in files:
        try:
            n_columns, meta = _npz_header(path) if path.suffix == ".npz" else _table_header(path)
        except (OSError, ValueError, KeyError, UnicodeDecodeError, ImportError) as err:
            raise DataError(
                f"{path}: cannot read its header ({err}); is it a {path.suffix[1:]} file?"
            ) from err
        _declarations(path, n_columns, _read_meta(path, meta), declared)
