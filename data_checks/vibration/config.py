"""Typed settings of the raw-sensor checks: light to import (no GX, no pandas), so the CLI and a
device validate a config before anything heavy loads."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from data_checks.findings import Severity


class SensorRules(BaseModel):
    """Limits of the raw-sensor checks (data_checks.vibration.checks); defaults suit accelerometers."""

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
    severity: dict[str, Severity] = {}  # rule -> severity, overriding rules.DEFAULT_SEVERITY
