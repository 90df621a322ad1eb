"""Issue 22's quarantine findings: no file is ever lost, overwritten or written outside its place, and
the data folder is the user's."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.errors import DataError
from data_checks.findings import Finding, Severity
from data_checks.quarantine import EXCLUDE, MOVE, QuarantineError, quarantine, restore
from flows.cli.main import app
from tests.fixtures.data import TILES


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def bad(path: Path, rule: str = "decode") -> Finding:
    return Finding(rule, Severity.ERROR, f"planted: {rule}", str(path))


def dataset(root: Path, content: bytes) -> Path:
    image = root / "MT_Free" / "Imgs" / "exp1_num_1.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(content)
    return image


def test_by_default_the_data_folder_is_left_as_it_is(tmp_path):
    """Finding: on a DVC-tracked or shared folder the check moved files out of the user's data."""
    data = tmp_path / "project" / "data" / "tiles"
    image = dataset(data, (TILES / "MT_Free" / "Imgs").glob("*.jpg").__next__().read_bytes())
    before = tree(data)
    [item] = quarantine([bad(image)], data, tmp_path / "project" / "quarantine")
    assert tree(data) == before and item.mode == EXCLUDE
    assert Path(item.kept_at).read_bytes() == image.read_bytes()  # a copy kept with the run's reasons
    entry = json.loads((Path(item.kept_at).parent / "entry.json").read_text())
    assert entry["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest() and entry["status"] == "excluded"


def test_two_datasets_with_the_same_relative_path_never_overwrite_each_other(tmp_path):
    """Finding: a second data set's file with the same relative path overwrote a quarantined photo (48 KB -> 0 bytes)."""
    store = tmp_path / "project" / "quarantine"
    first = dataset(tmp_path / "project" / "data" / "line1", b"a real photo" * 4000)
    second = dataset(tmp_path / "project" / "data" / "line2", b"")
    [kept1] = quarantine([bad(first)], first.parents[2], store, mode=MOVE)
    [kept2] = quarantine([bad(second)], second.parents[2], store, mode=MOVE)
    assert (
        Path(kept1.kept_at).read_bytes() == b"a real photo" * 4000 and Path(kept2.kept_at).read_bytes() == b""
    )
    assert Path(kept1.kept_at).parent != Path(kept2.kept_at).parent
    # the same path again, with new bytes: a new entry beside the old one
    third = dataset(tmp_path / "project" / "data" / "again", b"v1")
    [old] = quarantine([bad(third)], third.parents[2], store)
    third.write_bytes(b"v2")
    [new] = quarantine([bad(third)], third.parents[2], store)
    assert Path(old.kept_at).read_bytes() == b"v1" and Path(new.kept_at).read_bytes() == b"v2"


def test_restore_in_a_copied_project_writes_into_the_copy_and_never_overwrites(tmp_path):
    """Finding: reason files stored absolute paths, so restore in a copied project wrote into the original."""
    original = tmp_path / "original"
    image = dataset(original / "data" / "tiles", b"photo")
    quarantine([bad(image)], original / "data" / "tiles", original / "quarantine", mode=MOVE)
    assert not image.exists()
    copy = Path(shutil.copytree(original, tmp_path / "copy"))
    report = restore(copy / "quarantine")
    assert report.restored == [
        str((copy / "data" / "tiles" / "MT_Free" / "Imgs" / "exp1_num_1.jpg").resolve())
    ]
    assert not image.exists()  # the original project was not touched
    assert (copy / "data" / "tiles" / "MT_Free" / "Imgs" / "exp1_num_1.jpg").read_bytes() == b"photo"
    # a second restore, or a file already back in place: nothing overwritten, and it says so
    (original / "data" / "tiles" / "MT_Free" / "Imgs" / "exp1_num_1.jpg").write_bytes(b"someone's new file")
    report = restore(original / "quarantine")
    assert report.restored == [] and "restore never overwrites" in report.refused[0]
    assert (
        original / "data" / "tiles" / "MT_Free" / "Imgs" / "exp1_num_1.jpg"
    ).read_bytes() == b"someone's new file"
    log = (original / "quarantine" / "quarantine_log.csv").read_text()
    assert "move" in log


def test_restore_refuses_to_write_outside_the_data_set(tmp_path):
    image = dataset(tmp_path / "data" / "tiles", b"photo")
    [item] = quarantine([bad(image)], tmp_path / "data" / "tiles", tmp_path / "quarantine", mode=MOVE)
    entry_file = Path(item.kept_at).parent / "entry.json"
    entry = json.loads(entry_file.read_text())
    entry_file.write_text(json.dumps(entry | {"relpath": "../../../outside.jpg"}))  # a tampered record
    report = restore(tmp_path / "quarantine")
    assert report.restored == [] and "outside its data set's root" in report.refused[0]
    assert not (tmp_path / "outside.jpg").exists() and not (tmp_path.parent / "outside.jpg").exists()


def test_moving_files_out_of_a_dvc_tracked_folder_is_refused(tmp_path):
    data = tmp_path / "data" / "tiles"
    image = dataset(data, b"photo")
    (tmp_path / "dvc.yaml").write_text("stages:\n  prepare:\n    cmd: x\n    deps:\n      - data/tiles\n")
    with pytest.raises(QuarantineError, match="tracked by DVC"):
        quarantine([bad(image)], data, tmp_path / "quarantine", mode=MOVE)
    assert image.exists()
    assert quarantine([bad(image)], data, tmp_path / "quarantine")[0].mode == EXCLUDE  # excluding is fine


def test_restore_of_a_store_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    """Finding: `quarantine restore /nonexistent` reported "restored 0 file(s)" and exited 0."""
    with pytest.raises(DataError, match="no quarantine store"):
        restore(tmp_path / "nonexistent")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["quarantine", "restore", str(tmp_path / "nonexistent")])
    assert result.exit_code == 2 and "no quarantine store" in result.output
