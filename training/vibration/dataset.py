"""Checked sensor records -> feature windows split by the honest protocol.

Every normal record is cut in time: [0, train_end) trains, [train_end, calibration_end) sets
the threshold, the rest tests; windows never straddle a boundary, so no sample is shared between
parts. Fault records are test-only. Windows that touch a sample-level error (NaN burst, clipping,
gap, ...) are kept in the listing with their flag but get no features, so they are neither
trained on nor scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import DataError
from data_checks.vibration.rules import CheckedRecord
from inputs.vibration.features import extract_features, feature_names, frame
from training.vibration.config import AnomalyTrainConfig

PARTS = ("train", "calibration", "test")


@dataclass
class RecordWindows:
    """The windows of one record in one part: starts (W,), flags (W,), features (clean W, F)."""

    path: str
    label: str
    part: str  # train | calibration | test
    normal: bool
    rpm: float | None
    starts: np.ndarray
    flags: list[str]
    features: np.ndarray
    meta: dict[str, str] = field(default_factory=dict)
    samples: np.ndarray | None = field(default=None, repr=False)  # (N, C) the record's, not a copy
    length: int = 0

    def windows(self, which: np.ndarray) -> np.ndarray:
        """Raw windows (len(which), C, L) for positions `which` into `starts` (a view, no copy)."""
        if self.samples is None:
            raise ValueError(f"{self.path} holds feature rows only, no raw signal")
        view = np.lib.stride_tricks.sliding_window_view(self.samples, self.length, axis=0)  # (N', C, L)
        return view[self.starts[which]]

    @property
    def clean(self) -> np.ndarray:
        return np.array([not f for f in self.flags], bool)

    @property
    def group(self) -> str:
        """Fault type and size, e.g. "IR 0.007 in", or the record's label."""
        kind, size = self.meta.get("fault_type"), self.meta.get("fault_diameter_in")
        return f"{kind} {float(size):.3f} in" if kind and size and not self.normal else self.label

    @property
    def load(self) -> str:
        return f"{self.meta['load_hp']} hp" if "load_hp" in self.meta else "-"


@dataclass
class AnomalyDataset:
    feature_names: list[str]
    fs: float
    channels: tuple[str, ...]
    units: str | None
    parts: list[RecordWindows]

    def select(self, part: str, normal: bool | None = None) -> list[RecordWindows]:
        return [p for p in self.parts if p.part == part and (normal is None or p.normal == normal)]

    def features(self, part: str, normal: bool | None = True) -> np.ndarray:
        chosen = [p.features for p in self.select(part, normal)]
        return np.concatenate(chosen) if chosen else np.empty((0, len(self.feature_names)))

    def flagged(self) -> int:
        return sum(int((~p.clean).sum()) for p in self.parts)


def record_windows(checked: CheckedRecord, cfg: AnomalyTrainConfig, part: str, normal: bool,
                   hop: int, lo: float = 0.0, hi: float = 1.0) -> RecordWindows:  # fmt: skip
    """Features of the clean windows lying fully inside [lo, hi) of the record (fractions of its length)."""
    record = checked.record
    n = record.n_samples
    windows = frame(record.samples, cfg.window.length, hop, int(lo * n), int(hi * n))
    flags = checked.window_flags(windows.starts, cfg.window.length)
    clean = np.array([not f for f in flags], bool)
    features = (
        extract_features(windows.data[clean], record.fs, record.rpm, cfg.features)
        if clean.any()
        else np.empty((0, len(feature_names(cfg.features, record.fs, record.channels))))
    )
    return RecordWindows(
        str(record.path), record.label, part, normal, record.rpm, windows.starts, flags, features,
        dict(record.metadata), record.samples, cfg.window.length,
    )  # fmt: skip


def _same_layout(records: list[CheckedRecord]) -> None:
    first = records[0].record
    for checked in records[1:]:
        r = checked.record
        if r.fs != first.fs or r.channels != first.channels:
            raise DataError(
                f"{r.path}: {r.fs:g} Hz, channels {list(r.channels)}; {first.path.name} has {first.fs:g} Hz, "
                f"channels {list(first.channels)}. One model needs one layout: resample or split the folder"
            )


def build_dataset(
    records: list[CheckedRecord], cfg: AnomalyTrainConfig, normal_labels: tuple[str, ...]
) -> AnomalyDataset:
    """Split and featurise every record; needs at least one normal record."""
    normal = [r for r in records if r.record.label in normal_labels]
    if not normal:
        labels = sorted({r.record.label for r in records})
        raise DataError(
            f"no normal record: labels found {labels}, expected one of {list(normal_labels)} (data.normal_labels)"
        )
    _same_layout(records)
    s = cfg.split
    parts = []
    for checked in normal:
        parts.append(record_windows(checked, cfg, "train", True, s.normal_hop, 0.0, s.train_end))
        parts.append(
            record_windows(checked, cfg, "calibration", True, s.normal_hop, s.train_end, s.calibration_end)
        )
        parts.append(record_windows(checked, cfg, "test", True, s.normal_hop, s.calibration_end, 1.0))
    for checked in records:
        if checked.record.label not in normal_labels:
            parts.append(record_windows(checked, cfg, "test", False, s.fault_hop))
    first = normal[0].record
    return AnomalyDataset(feature_names(cfg.features, first.fs, first.channels), first.fs, first.channels, first.units, parts)  # fmt: skip


def add_device_rows(
    dataset: AnomalyDataset, rows: np.ndarray, source: str, cfg: AnomalyTrainConfig
) -> AnomalyDataset:
    """The dataset plus feature rows a device reported as normal (oldest first), split in time like a
    normal record: the first `split.train_end` train, then calibration, the rest test. They carry no
    raw signal (a device sends features, not recordings), so they are trained and scored, never plotted."""
    if rows.ndim != 2 or rows.shape[1] != len(dataset.feature_names):
        raise DataError(
            f"{source}: feature rows of width {rows.shape[-1] if rows.ndim else 0}, the model has "
            f"{len(dataset.feature_names)} features; the device runs another feature set: retrain from recordings"
        )
    n, s = len(rows), cfg.split
    cuts = [0, int(s.train_end * n), int(s.calibration_end * n), n]
    added = []
    for part, lo, hi in zip(PARTS, cuts[:-1], cuts[1:], strict=True):
        starts = np.arange(hi - lo) * cfg.window.length  # positions in the device's time, one window apart
        added.append(RecordWindows(source, "normal", part, True, None, starts, [""] * (hi - lo), rows[lo:hi]))
    return AnomalyDataset(
        dataset.feature_names, dataset.fs, dataset.channels, dataset.units, dataset.parts + added
    )
