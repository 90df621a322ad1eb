"""Settings files fail in one line that says where."""

from __future__ import annotations

import pytest

from core.config import load_config
from core.errors import ConfigError
from flows.images.config import DefectJobConfig


def test_a_broken_yaml_file_is_one_line_naming_the_file_line_and_column(tmp_path):
    """Finding: a broken YAML printed 8 lines of parser dump (`in "<unicode string>"`, a caret line)."""
    broken = tmp_path / "job.yaml"
    broken.write_text("fit:\n  epochs: [1, 2\n  lr: }\n")
    with pytest.raises(ConfigError) as err:
        load_config(DefectJobConfig, broken)
    message = str(err.value)
    assert "\n" not in message and str(broken) in message and "line 3, column 5" in message


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read config .*nope.yaml: No such file"):
        load_config(DefectJobConfig, tmp_path / "nope.yaml")
