"""What a drifted device gives its retraining run: its recent normal operation, as it reported it.

A vibration device sends, per window, a sample of the feature vectors it scored (core.telemetry).
Those rows are the model's inputs, so an anomaly model can train on them directly. Only windows the
current model calls normal count: a window whose alarms are more than the version's own false-alarm
rate explains may hold a developing fault, and a fault learned as normal is never detected again.
"More than explains" is a binomial tail: with 64 items and the 1.4 % false-alarm rate of a normal
record, most normal windows hold an alarm or two (a rule of "no alarm at all" kept 2 windows of 8
and retrained on too little to pass the gate), while 5 or more alarms (p = 0.002) keep a window
out. Without a known rate, any alarm keeps a window out. The retraining run still scores the fault
records, and its gate refuses a model that stops detecting them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from core.errors import DataError
from edge.telemetry import TelemetryStore

ALARM_TAIL = 0.01  # a window's alarm count this improbable under the normal rate keeps it out


@dataclass(frozen=True)
class DeviceNormal:
    device: str
    rows: np.ndarray  # (N, F) feature rows, oldest first
    windows_used: int
    windows_alarmed: int  # recent windows left out: more alarms than the normal rate explains


def alarmed(window, normal_rate: float | None) -> bool:
    """More alarms than `normal_rate` (the version's false-alarm rate on normal data) explains."""
    if window.alarms == 0:
        return False
    if normal_rate is None:
        return True
    return float(binom.sf(window.alarms - 1, max(window.items, window.alarms), normal_rate)) < ALARM_TAIL


def device_normal_rows(telemetry: TelemetryStore, device: str, model: str,
                       normal_rate: Callable[[str], float | None] = lambda version: None,
                       recent_windows: int = 20, min_rows: int = 64) -> DeviceNormal:  # fmt: skip
    """Feature rows of the device's last `recent_windows` normal windows of `model`;
    `normal_rate(version)` is each version's false-alarm rate on normal data (its reference's)."""
    stored = [w.window for _, w in telemetry.windows(model=model, device=device)]
    vibration = [w for w in stored if w.kind == "vibration-anomaly"]
    flags = [alarmed(w, normal_rate(w.version)) for w in vibration]
    quiet = [w for w, bad in zip(vibration, flags, strict=True) if not bad and w.features]
    chosen = quiet[-recent_windows:]
    left_out = sum(flags[-recent_windows:])
    rows = [row for w in chosen for row in w.features]
    if len(rows) < min_rows:
        raise DataError(
            f"device {device}: {len(rows)} normal feature rows in {len(chosen)} normal windows of {model} "
            f"({left_out} of its last {min(len(vibration), recent_windows)} windows alarmed beyond the normal rate); "
            f"need {min_rows}: wait for more telemetry, and if the alarms are real, this is a fault to fix, not a new normal"
        )  # fmt: skip
    return DeviceNormal(device, np.asarray(rows, np.float64), len(chosen), left_out)
