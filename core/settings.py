"""Defaults every layer shares: where the stores live, and the environment that keeps the stack offline.

`apply_offline_defaults` must run before MLflow, Prefect, GX, DVC or albumentations import.

Measured on this stack (see STACK_NOTES): without these, albumentations spends 2 s checking for
updates, timm hangs 49 s on the hub, Prefect logs a telemetry error and MLflow phones home.
Defaults only: a value the user exported wins.
"""

from __future__ import annotations

import os
from pathlib import Path

# The tracking store and registry when none is configured: a SQLite file in the working folder.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
# The edge server's state (signing key, device database, artefact cache) when none is given.
DEFAULT_EDGE_STATE = Path("edge-state")

# A flow run's heartbeat: the team stack's automation marks a deployment's run CRASHED after three
# missed (flows.deploy); Prefect's own default, 180 s, would have live runs crashed at 90 s.
HEARTBEAT_S = 30

OFFLINE_DEFAULTS = {
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    # Prefect waits 20 s for its temporary API server; with training on both cores of a 2-core
    # machine it took longer once and the flow failed before it began ("Timed out while attempting
    # to connect to ephemeral Prefect API server").
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DO_NOT_TRACK": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "TQDM_DISABLE": "1",  # GX and DVC draw tqdm bars of their own inside ours
}


def apply_offline_defaults() -> None:
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
