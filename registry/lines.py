"""Which product line a registered model serves, so two lines in one store never gate against or
replace each other.

A line is a name given once (`tracking.line`, `--line`), by default the data set's folder name. A
training claims its model name for its line before it starts (registered-model tag `product_line`;
runs and versions carry the same tag): the first line to train under a name owns it, a model from
before lines is claimed by the next line that trains it. Another line's training under an owned name
is refused in its first seconds, before any check or training, with the setting that fixes it: its
candidate would otherwise be gated against, and could replace, the other line's champion. Unless
the name was chosen (`tracking.model_name` set), a new line whose default name another line owns
trains `<line>-defects` instead, and is told so: a second line works on its first run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.errors import ConfigError

LINE_TAG = "product_line"
LINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def line_of(data: Path, declared: str | None) -> str:
    """The declared line, else the data set's folder name (a CSV manifest: the file's name without .csv)."""
    path = Path(os.path.abspath(data))  # "." names the working folder; a symlink keeps its own name
    line = declared or (path.stem if path.suffix.lower() == ".csv" else path.name)
    if not LINE_NAME.fullmatch(line):
        raise ConfigError(
            f"product line {line!r}: use letters, digits, '.', '_' or '-' (at most 100), starting with a "
            "letter or digit; name it with --line NAME"
        )
    return line


def owner_of(client, model: str) -> str | None:
    """The line that owns `model` in this store, or None (not registered yet, or registered before lines)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(model).tags.get(LINE_TAG)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def settle_line(client, model: str, line: str, chosen: bool, claim: bool) -> str:
    """The registered model `line` trains, with its owner read once: `model`, or `<line>-defects` when
    `model` is the default name (not `chosen`) and another line owns it. Refused when another line owns
    the result; with `claim`, owned by `line` before training (created with the tag when new: two lines
    starting at once, one creates it, the other finds its owner and is refused)."""
    owner = owner_of(client, model)
    if not chosen and owner is not None and owner != line:
        model = f"{line}-defects"
        owner = owner_of(client, model)
    _refuse_other_line(model, owner, line)
    if claim and owner is None:
        _claim_unowned(client, model, line)
    return model


def _refuse_other_line(model: str, owner: str | None, line: str) -> None:
    if owner is not None and owner != line:
        raise ConfigError(
            f"registered model {model!r} serves product line {owner!r}, and this data is line {line!r}: "
            f"its champion must not be judged against or replaced by another line's model. Give this line "
            f"its own model with --set tracking.model_name={line}-defects, or, if it is the same line under "
            f"another folder name, say so with --line {owner}"
        )


def _claim_unowned(client, model: str, line: str) -> None:
    """Create `model` owned by `line`; one that exists (another line won the race, or it was registered
    before lines) is re-read: refused if owned, claimed if not."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model, tags={LINE_TAG: line})
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        owner = owner_of(client, model)
        _refuse_other_line(model, owner, line)
        if owner is None:
            client.set_registered_model_tag(model, LINE_TAG, line)
