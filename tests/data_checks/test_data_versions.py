"""A data version asked for by its DVC hash comes back byte for byte from a DVC remote (a local folder
here, the stack's bucket in tests/stack), is reused once complete, and an unknown or malformed hash is
one DataError that names it and says what to do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import DataError
from data_checks.versioning import REMOTE_ENV, dvc_data_version, dvc_remote, fetch_data_version


def dvc(repo: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, (args, done.stderr[-1500:])
    return done.stdout


@pytest.fixture
def pushed(tmp_path, monkeypatch):
    """A checkout that tracked a tiny folder with DVC and pushed it to a local remote: (checkout, hash)."""
    monkeypatch.delenv(REMOTE_ENV, raising=False)  # a shell after `eval "$(shopfloor stack env)"`
    checkout = tmp_path / "checkout"
    (checkout / "tiles" / "MT_Free").mkdir(parents=True)
    (checkout / "tiles" / "MT_Free" / "a.jpg").write_bytes(os.urandom(2048))
    (checkout / "tiles" / "notes.txt").write_text("tile subset\n")
    dvc(checkout, "init", "--no-scm", "-q")
    dvc(checkout, "remote", "add", "-d", "local", str(tmp_path / "remote"))
    dvc(checkout, "add", "-q", "tiles")
    dvc(checkout, "push", "-q")
    version = next(
        line.split()[-1] for line in (checkout / "tiles.dvc").read_text().splitlines() if "md5:" in line
    )
    return checkout, version


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_data_version_is_pulled_by_its_hash_and_reused_once_complete(pushed, tmp_path):
    checkout, version = pushed
    assert version.endswith(".dir") and dvc_data_version(checkout / "tiles") == version
    remote = dvc_remote(checkout)
    assert remote.name == "local" and remote.url == str(tmp_path / "remote")
    got = fetch_data_version(version, "tiles", tmp_path / "cache", remote)
    assert got.name == "tiles" and files(got) == files(checkout / "tiles")
    (got / "notes.txt").unlink()  # an incomplete copy is completed again from the remote
    assert files(fetch_data_version(version, "tiles", tmp_path / "cache", remote)) == files(
        checkout / "tiles"
    )
    shutil.rmtree(tmp_path / "remote")  # a complete copy needs no remote at all
    assert fetch_data_version(version, "tiles", tmp_path / "cache", remote) == got


def test_the_checkouts_default_remote_is_used_when_none_is_given(pushed, tmp_path, monkeypatch):
    checkout, version = pushed
    monkeypatch.chdir(checkout / "tiles")  # anywhere inside the checkout, as with `dvc pull`
    got = fetch_data_version(version, "tiles", tmp_path / "cache")
    assert files(got) == files(checkout / "tiles")


def test_an_unknown_or_malformed_hash_is_one_error_that_says_what_to_do(pushed, tmp_path):
    checkout, _ = pushed
    unknown = "0123456789abcdef0123456789abcdef.dir"
    with pytest.raises(
        DataError, match=rf"{unknown} is not \(completely\) in the DVC remote 'local'.*dvc push"
    ):
        fetch_data_version(unknown, "tiles", tmp_path / "cache", dvc_remote(checkout))
    with pytest.raises(
        DataError, match="'tiles-v2' is not a DVC hash: expected the `md5` a .dvc file or dvc.lock records"
    ):
        fetch_data_version("tiles-v2", "tiles", tmp_path / "cache", dvc_remote(checkout))


def test_without_any_remote_the_error_names_both_ways_to_give_one(tmp_path, monkeypatch):
    monkeypatch.delenv(REMOTE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=f"no DVC remote to pull data versions from: set {REMOTE_ENV}"):
        fetch_data_version("0123456789abcdef0123456789abcdef.dir", "tiles", tmp_path / "cache")


def test_the_cli_refuses_a_malformed_or_unknown_version_in_one_line(pushed, tmp_path):
    """`train defects --data-version`: a malformed hash before anything starts, an unknown one when the flow
    goes to pull it (SHOPFLOOR_DVC_REMOTE names the remote, as `shopfloor stack env` does)."""
    _, version = pushed
    env = os.environ | {REMOTE_ENV: str(tmp_path / "remote"), "COLUMNS": "300"}
    unknown = version.replace(version[:8], "00000000")
    for asked, expected in (("v2", "'v2' is not a DVC hash"), (unknown, f"{unknown} is not (completely) in")):
        out = subprocess.run([sys.executable, "-m", "flows.cli.main", "train", "defects", "--data-version", asked],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
        said = (out.stdout + out.stderr).strip()
        assert out.returncode == 2 and expected in said and "Traceback" not in said, said[-2000:]
        assert len([line for line in said.splitlines() if "error:" in line]) == 1
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was started
