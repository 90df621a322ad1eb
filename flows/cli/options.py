"""Options several commands share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML file; only the keys that differ from the defaults."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one setting, e.g. --set fit.epochs=3 (repeatable)."),
]
