"""Typed settings of the data checks: light to import (no GX, no image libraries), so the CLI
validates a config in a fraction of a second before anything heavy loads."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from data_checks.findings import Severity
from data_checks.manifest import GroupBy


class ImageRules(BaseModel):
    """Ranges an image must fall in; defaults are wide enough for real factory cameras."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_side: int = 32
    max_side: int = 8192
    min_aspect: float = 0.2
    max_aspect: float = 5.0
    channels: tuple[int, ...] = (1, 3)
    modes: tuple[str, ...] = ("L", "RGB")
    min_brightness: float = 10.0
    max_brightness: float = 245.0
    min_contrast: float = 2.0
    min_blur: float = 10.0  # variance of the Laplacian; the magnetic tiles' sharpest-lit minimum is ~60
    min_per_class: int = 10
    severity: dict[str, Severity] = {}  # rule -> severity, overriding image_suite.DEFAULT_SEVERITY


class DuplicateConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    view_distance: float = Field(0.02, gt=0, lt=2)  # 1 - correlation where the linkage tree is cut
    copy_distance: float = Field(0.002, ge=0, lt=2)  # near-copy: thumbnails correlate >= 0.998 ...
    copy_brightness: float = Field(4.0, ge=0)  # ... and mean grey levels within this: the same shot
    max_images: int = Field(20000, ge=2)  # the distance matrix is N x N; beyond this, split the data


class ChecksConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: tuple[str, ...] | None = None  # the known class set; None = whatever folders exist
    group_by: GroupBy = GroupBy.AUTO
    frame_gap: int = Field(100, ge=1)
    rules: ImageRules = ImageRules()
    duplicates: DuplicateConfig = DuplicateConfig()
    max_error_fraction: float = Field(0.05, ge=0, le=1)
    stop_on_error: bool = True  # False: data-set level errors are logged and the flow goes on
    quarantine_dir: Path = Path("quarantine")
    cache_dir: Path = Path(".shopfloor/cache")


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


class SensorRules(BaseModel):
    """Limits of the raw-sensor checks (data_checks.sensor_checks); defaults suit accelerometers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    block_s: float = Field(0.1, gt=0)  # the checks report sample ranges in blocks of this length
    rate_tolerance: float = Field(0.01, gt=0, lt=1)  # timestamps' rate vs the declared one
    gap_factor: float = Field(1.5, gt=1)  # a time step this many nominal steps long is a gap
    clip_fraction: float = Field(0.99, gt=0, le=1)  # of sensor_range, when the range is declared
    min_clip_run: int = Field(3, ge=2)  # consecutive samples at the record's extreme = a flat top
    min_clip_count: int = Field(10, ge=2)  # samples anywhere at exactly the record's extreme = clipped
    flat_run_s: float = Field(0.005, gt=0)  # equal consecutive samples for this long = flat-lined
    max_rms_jump: float = Field(5.0, gt=1)  # block RMS vs the previous block, either direction
    # share of power below fs/8: at most 0.30 in the CWRU 12 kHz records, 0.94 for 48 kHz read as 12 kHz
    max_low_band_power: float = Field(0.8, gt=0, le=1)
    max_alignment_lag_s: float = Field(0.0005, ge=0)  # channels offset by more than this are reported
    allowed_units: tuple[str, ...] = ("g", "m/s^2", "mm/s", "um", "V")
    max_bad_fraction: float = Field(0.5, ge=0, le=1)  # more broken samples than this stops the record
    severity: dict[str, Severity] = {}  # rule -> severity, overriding sensor_checks.DEFAULT_SEVERITY
