"""The CLI reads well and fails with a message, not a traceback."""

from __future__ import annotations

import subprocess
import sys


def shopfloor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_the_commands():
    out = shopfloor("--help")
    assert out.returncode == 0
    for command in ("train", "check", "ui", "quarantine"):
        assert command in out.stdout


def test_missing_data_folder_is_one_clear_line(tmp_path):
    out = shopfloor("train", "defects", "--data", str(tmp_path / "nope"))
    assert out.returncode == 2
    assert "does not exist" in out.stderr and "Traceback" not in out.stderr + out.stdout


def test_bad_setting_names_the_key(tmp_path):
    out = shopfloor("train", "defects", "--data", str(tmp_path), "--set", "fit.epochs=-1")
    assert out.returncode == 2
    assert "fit.epochs" in out.stderr and "Traceback" not in out.stderr


def test_unknown_setting_is_refused(tmp_path):
    out = shopfloor("train", "defects", "--data", str(tmp_path), "--set", "fit.epoch=3")
    assert out.returncode == 2 and "fit.epoch" in out.stderr
