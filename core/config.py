"""Load a typed configuration tree: YAML for what differs from the defaults, `--set key.sub=value` on top.

Every job's config is a frozen pydantic model that forbids unknown keys; errors name the key, the
problem and the value, in one message (exit code 2 at the CLI), before any data is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from core.errors import ConfigError


def _set_dotted(tree: dict[str, Any], dotted: str, raw: str) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is a value, not a section")
    node[leaf] = yaml.safe_load(raw)  # "3" -> 3, "true" -> True, "[a, b]" -> list


def _read_yaml(path: Path) -> Any:
    """The file's YAML; a file that is missing or does not parse is one line naming where."""
    try:
        return yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config {path}{where} is not valid YAML ({problem}): fix it there") from None


def load_config(model: type[BaseModel], path: Path | None = None, overrides: list[str] | None = None) -> Any:
    """Validate YAML + `key.sub=value` overrides into `model`; errors name the key and the problem."""
    tree: dict[str, Any] = {}
    if path is not None:
        tree = _read_yaml(Path(path))
        if not isinstance(tree, dict):
            raise ConfigError(f"config {path} must be a mapping of sections, found {type(tree).__name__}")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (e.g. fit.epochs=3), got {item!r}")
        key, value = item.split("=", 1)
        _set_dotted(tree, key.strip(), value)
    try:
        return model.model_validate(tree)
    except ValidationError as err:
        problems = [
            f"  {'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in err.errors()
        ]
        source = f" in {path}" if path else ""
        raise ConfigError(f"invalid configuration{source}:\n" + "\n".join(problems)) from None
