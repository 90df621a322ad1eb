"""Keep the stack offline and quiet. Must run before MLflow, Prefect, GX, DVC or albumentations import.

Measured on this stack (see STACK_NOTES): without these, albumentations spends 2 s checking for
updates, timm hangs 49 s on the hub, Prefect logs a telemetry error and MLflow phones home.
Defaults only: a value the user exported wins.
"""

from __future__ import annotations

import os

OFFLINE_DEFAULTS = {
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


class _NoTracebackOnConsole:
    """Logging filter: keep the message, drop the traceback (unless SHOPFLOOR_DEBUG is set).

    Prefect logs a failed task with its traceback. The Prefect API handler runs first and keeps
    the full record for the Prefect UI; the terminal shows one line, and the CLI adds what to do.
    """

    def filter(self, record) -> bool:
        if record.exc_info and not os.environ.get("SHOPFLOOR_DEBUG"):
            error = record.exc_info[1]
            record.msg = f"{record.getMessage().split(' - Retries are exhausted')[0]}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            if error is not None and str(error) not in record.msg:
                record.msg += f": {error}"
        return True


def hide_console_tracebacks() -> None:
    """Attach the filter to Prefect's console handler (Prefect configures logging on import)."""
    import logging

    import prefect  # noqa: F401  (sets up Prefect's logging handlers)

    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "PrefectConsoleHandler" and not any(
            isinstance(f, _NoTracebackOnConsole) for f in handler.filters
        ):
            handler.addFilter(_NoTracebackOnConsole())
