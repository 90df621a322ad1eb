"""The CLI reads well and fails with a message, not a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def shopfloor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli.main", *args], capture_output=True, text=True, timeout=300
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


def test_a_good_class_the_data_lacks_fails_before_training(tile_subset, tmp_path):
    out = subprocess.run([sys.executable, "-m", "flows.cli.main", "train", "defects", "--data", str(tile_subset),
                          "--good", "MT_Fine", "--set", "review.enabled=false"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2 and "'MT_Fine' is not a class of this data" in out.stderr
    assert "MT_Free" in out.stderr and "epoch" not in out.stderr + out.stdout


def test_remote_training_without_a_stack_says_how_to_get_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = subprocess.run([sys.executable, "-m", "flows.cli.main", "train", "defects", "--remote", "--data", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert out.returncode == 2 and "shopfloor stack env" in out.stderr and "Traceback" not in out.stderr


def test_bad_setting_names_the_key(tmp_path):
    out = shopfloor("train", "defects", "--data", str(tmp_path), "--set", "fit.epochs=-1")
    assert out.returncode == 2
    assert "fit.epochs" in out.stderr and "Traceback" not in out.stderr


def test_unknown_setting_is_refused(tmp_path):
    out = shopfloor("train", "defects", "--data", str(tmp_path), "--set", "fit.epoch=3")
    assert out.returncode == 2 and "fit.epoch" in out.stderr


def test_ui_serves_the_mlflow_store(tmp_path):
    """`shopfloor ui` starts MLflow's UI on the flows' store and answers HTTP."""
    import time

    import httpx

    from tests.fixtures.servers import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli.main", "ui", "--port", str(port), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline, status = time.time() + 120, None
        while time.time() < deadline and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.5)
        assert status == 200
        experiments = httpx.post(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search", json={"max_results": 10}, timeout=10
        )
        assert experiments.status_code == 200 and "Default" in experiments.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the whole group: mlflow ui runs uvicorn in a child
        proc.wait(timeout=20)


def test_a_typo_in_a_name_fails_when_the_config_loads_before_any_data_is_read(tmp_path):
    """Backbone, augmentation preset and device are checked with the config, listing the valid
    choices; the data folder is real, so a slow data check would have started if they were not."""
    from tests.fixtures.data import TILES

    cases = {
        "model.backbone=efficientnet_lite9": "'efficientnet_lite0'",
        "augment.presets=[sensor, lightning]": "'lighting', 'sensor' or 'geometry-small'",
        "fit.device=gpu": "auto, cpu, cuda or cuda:N",
    }
    for setting, choices in cases.items():
        out = shopfloor("train", "defects", "--data", str(TILES), "--set", setting)
        key = setting.split("=")[0]
        assert out.returncode == 2, out.stderr
        assert key in out.stderr and choices in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert "Data checks" not in out.stderr + out.stdout


def test_the_console_filter_reaches_prefects_console_handler():
    """Finding: `import prefect` alone leaves logging unconfigured, so the filter found no handler and
    a failed task printed its traceback on the terminal. Run alone, in a fresh process."""
    code = (
        "import logging; from flows.report import hide_console_tracebacks; hide_console_tracebacks(); "
        "hs = [h for h in logging.getLogger().handlers if type(h).__name__ == 'PrefectConsoleHandler']; "
        "print(len(hs), all(any(type(f).__name__ == '_NoTracebackOnConsole' for f in h.filters) for h in hs))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["1", "True"], out.stderr


def test_an_error_naming_a_rule_in_brackets_is_printed_as_written(capsys, monkeypatch):
    """Finding: "data set: [min_per_class] class 'MT_Crack': ..." lost its rule name, read as markup."""
    import pytest
    import typer

    from core.errors import DataError
    from flows.cli.main import run_guarded

    app = typer.Typer()

    @app.command()
    def check() -> None:
        raise DataError("data set: [min_per_class] class 'MT_Crack': every class needs >= 10 images")

    monkeypatch.setattr(sys, "argv", ["shopfloor"])
    with pytest.raises(SystemExit) as exited:
        run_guarded(app)
    assert exited.value.code == 2
    assert "[min_per_class] class 'MT_Crack'" in capsys.readouterr().err


def test_a_flow_that_fails_its_checks_ends_on_its_error_line(tmp_path):
    """Finding: after the error line, a local run printed "--- Error logging to API --- All connection
    attempts failed": Prefect sent its queued logs at exit, after the temporary API had stopped."""
    from tests.fixtures.data import TILES

    for name in ("MT_Free", "MT_Crack"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for image in sorted((TILES / name / "Imgs").glob("*.jpg"))[:3]:
            (tmp_path / "data" / name / image.name).symlink_to(image)
    out = subprocess.run([sys.executable, "-m", "flows.cli.main", "train", "defects", "--data", str(tmp_path / "data"),
                          "--set", "review.enabled=false"], capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2 and "[min_per_class] class 'MT_Crack'" in out.stderr, out.stderr
    assert "Error logging to API" not in out.stderr and "connection attempts failed" not in out.stderr
