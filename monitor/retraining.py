"""What a drifted device gives its retraining run: its recent normal operation, as it reported it.

A vibration device sends, per window, a sample of the feature vectors it scored (core.telemetry).
Those rows are the model's inputs, so an anomaly model can train on them directly. Only windows
with no alarm count: a window the current model alarmed on may hold a developing fault, and a
fault learned as normal is never detected again. The retraining run still scores the fault
records, and its gate refuses a model that stops detecting them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import DataError
from edge.telemetry import TelemetryStore


@dataclass(frozen=True)
class DeviceNormal:
    device: str
    rows: np.ndarray  # (N, F) feature rows, oldest first
    windows_used: int
    windows_alarmed: int  # recent windows left out because the model alarmed in them


def device_normal_rows(telemetry: TelemetryStore, device: str, model: str, recent_windows: int = 20,
                       min_rows: int = 64) -> DeviceNormal:  # fmt: skip
    """Feature rows of the device's last `recent_windows` alarm-free windows of `model`."""
    stored = [w.window for _, w in telemetry.windows(model=model, device=device)]
    quiet = [w for w in stored if w.kind == "vibration-anomaly" and w.alarms == 0 and w.features]
    chosen = quiet[-recent_windows:]
    alarmed = sum(w.alarms > 0 for w in stored[-recent_windows:])
    rows = [row for w in chosen for row in w.features]
    if len(rows) < min_rows:
        raise DataError(
            f"device {device}: {len(rows)} normal feature rows in {len(chosen)} alarm-free windows of {model} "
            f"({alarmed} of its last {min(len(stored), recent_windows)} windows alarmed); need {min_rows}: wait for "
            "more telemetry, and if the alarms are real, this is a fault to fix, not a new normal"
        )
    return DeviceNormal(device, np.asarray(rows, np.float64), len(chosen), alarmed)
