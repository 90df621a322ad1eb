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
ImageDataOption = Annotated[
    Path,
    typer.Option("--data", "-d", help="Class-per-folder image tree, or a CSV manifest path,label[,group]."),
]
ProcessesOption = Annotated[
    int | None,
    typer.Option(
        "--processes",
        min=1,
        help="Fine-tune on N processes with torchrun (DistributedDataParallel; one GPU each where there are GPUs). Same as --set fit.processes=N.",
    ),
]
GoodOption = Annotated[
    str | None,
    typer.Option(
        "--good",
        help="The class of good parts (the reject decision is defect vs this). Default: the class whose name says so (good, ok, free, functional, normal). Same as --set eval.ok_class=CLASS.",
    ),
]
LineOption = Annotated[
    str | None,
    typer.Option(
        "--line",
        help="The product line this model serves. Default: the data set's folder name. A registered model serves one line. Same as --set tracking.line=NAME.",
    ),
]
SHORTCUTS = {"processes": "fit.processes", "good": "eval.ok_class", "line": "tracking.line"}


def shortcut_settings(**given: object) -> list[str]:
    """`--set` overrides for the options that are shortcuts of a setting, for those given."""
    return [f"{SHORTCUTS[name]}={value}" for name, value in given.items() if value is not None]
