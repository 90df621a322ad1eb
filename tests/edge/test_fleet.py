"""Issue 22's fleet findings: re-enrolment after revocation, names and groups checked, rollouts of
unknown models refused, and a status that says what each device should run and runs."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from edge.devices import DeviceStore
from flows.cli.main import app

runner = CliRunner()


def test_a_revoked_device_can_be_enrolled_again_with_a_new_token(tmp_path):
    """Finding: a revoked device could not be enrolled again ("already enrolled; revoke it first")."""
    store = DeviceStore(tmp_path / "devices.db")
    old = store.enroll("press-1")
    with pytest.raises(Exception, match="already enrolled; revoke it first"):
        store.enroll("press-1")
    store.revoke("press-1")
    new = store.enroll("press-1", "canary")
    assert new != old and store.authenticate(old) is None
    assert store.authenticate(new).name == "press-1" and store.authenticate(new).group == "canary"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["enroll", "press-1", "--group", "canry"],
            "unknown device group 'canry'; choose one of: canary, all",
        ),
        (["enroll", "../../etc/x"], "device name '../../etc/x'"),
        (["rollout", "nosuch", "99"], "no tracking store"),
        (["rollout", "tiles", "1", "--stage", "everyone"], "--stage must be 'canary' or 'all'"),
    ],
)
def test_typos_and_path_tricks_are_refused_with_exit_2(tmp_path, monkeypatch, args, message):
    """Findings: `--group canry` and a device named `../../etc/x` were accepted; `edge rollout nosuch 99` succeeded."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["edge", *args, "--state", str(tmp_path / "edge")], env={"COLUMNS": "250"})
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "edge" / "devices.db").exists() or args[0] != "enroll"
    assert not (tmp_path / "mlflow.db").exists()  # nothing created by a refused command


@pytest.mark.slow
def test_rollout_of_an_unknown_or_unapproved_version_is_refused(exported_pair, registry_store, tmp_path):
    from tests.fixtures.models import register_exports

    cfg, _ = registry_store
    [version] = register_exports(exported_pair[0][:1])
    base = ["edge", "rollout", "--state", str(tmp_path / "edge"), "--tracking-uri", cfg.tracking_uri]
    for args, message in ((["nosuch", "99"], "has no version"), (["tiles", "99"], "has no version"),
                          (["tiles", version], "has no approval record")):  # fmt: skip
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_status_shows_assigned_and_running_versions_and_rollout_stages(tmp_path):
    """Finding: `edge status` showed neither rollout stages nor which version each device should run."""
    store = DeviceStore(tmp_path / "edge" / "devices.db")
    store.enroll("press-1"), store.enroll("cam-1", "canary")
    store.assigned("press-1", "tiles", "3")
    store.reported("press-1", "tiles", "2", "ok")
    store.set_rollout("tiles", "3", "canary")
    result = runner.invoke(app, ["edge", "status", "--state", str(tmp_path / "edge")], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "press-1" in line)
    assert "tiles" in row and "3" in row and "2 (behind)" in row
    assert any("tiles" in line and "canary" in line for line in result.output.splitlines() if "│ 3" in line)
    assert "cam-1" in result.output
