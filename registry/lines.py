"""Which product line a registered model serves, so two lines in one store never gate against or
replace each other.

A line is a name given once (`tracking.line`, `--line`), by default the data set's folder name. The
first registration of a model claims it for its line (registered-model tag `product_line`; runs and
versions carry the same tag). A training of another line under a name a line already owns is
refused in the first seconds, before any check or training, with the setting that fixes it: its
candidate would otherwise be gated against, and could replace, the other line's champion.
"""

from __future__ import annotations

from pathlib import Path

LINE_TAG = "product_line"


def line_of(data: Path, declared: str | None) -> str:
    """The declared line, else the data set's folder name (a CSV manifest: the file's name without .csv)."""
    if declared:
        return declared
    path = data.resolve()
    return path.stem if path.suffix.lower() == ".csv" else path.name


def owner_of(client, model: str) -> str | None:
    """The line that owns `model` in this store, or None (not registered yet, or registered before lines)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(model).tags.get(LINE_TAG)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def check_line(client, model: str, line: str) -> None:
    """Refuse to train `line` under a model name another line owns."""
    from core.errors import ConfigError

    owner = owner_of(client, model)
    if owner is not None and owner != line:
        raise ConfigError(
            f"registered model {model!r} serves product line {owner!r}, and this data is line {line!r}: "
            f"its champion must not be judged against or replaced by another line's model. Give this line "
            f"its own model with --set tracking.model_name={line}-defects, or, if it is the same line under "
            f"another folder name, say so with --line {owner}"
        )


def claim(client, model: str, line: str) -> None:
    """After the first registration: the model now serves `line`."""
    if owner_of(client, model) is None:
        client.set_registered_model_tag(model, LINE_TAG, line)
