"""Data versions: the DVC hash of a data folder, computed the way `dvc.lock` records it, and the way
back from such a hash to the files.

A model registered by the Prefect flow and one built by `dvc repro` carry the same hash for the
same files, so either can be traced back to `git log dvc.lock` and the DVC cache. `fetch_data_version`
goes the other way: a worker asked for `<md5>.dir` pulls exactly those files from the DVC remote the
way `dvc pull` does for a checkout, through a scratch DVC repository whose only `.dvc` file names
that hash (`outs: [{md5: <hash>, path: <name>}]`).

Which remote: `SHOPFLOOR_DVC_REMOTE` (its URL; `shopfloor stack env` sets it to the stack's bucket,
with the S3 endpoint and keys in the AWS_* variables beside it), else the default remote of the DVC
repository around the working folder (`.dvc/config` and `.dvc/config.local`, where `stack up` puts
the stack's keys). Keys stay in memory: the scratch repository's config never holds them.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from core.errors import DataError

os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REMOTE_ENV = "SHOPFLOOR_DVC_REMOTE"
_HASH = re.compile(r"[0-9a-f]{32}(\.dir)?")


def dvc_data_version(path: Path) -> str:
    """DVC's md5 of a file or folder (`<md5>.dir` for folders), without touching any DVC cache.

    A folder DVC cannot hash (a broken link, an unreadable sub-folder) gets `unavailable: <why>`
    instead of stopping training: the data checks have already named the bad entry.
    """
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as scratch:
        try:
            _, _, obj = build(HashFileDB(fs, scratch), str(Path(path).resolve()), fs, "md5", dry_run=True)
        except OSError as err:
            return f"unavailable: {err.strerror or err} ({Path(err.filename or path).name})"
    return obj.hash_info.value


@dataclass(frozen=True)
class DvcRemote:
    name: str
    url: str
    options: dict  # DVC's remote settings besides the url (endpointurl, access_key_id, ...)
    source: str  # where the settings came from, for messages

    def __str__(self) -> str:
        return f"the DVC remote {self.name!r} ({self.url}, from {self.source})"


def checked_data_version(version: str) -> str:
    """`version` when it is a DVC md5 as a `.dvc` file or dvc.lock records it; DataError otherwise."""
    if not _HASH.fullmatch(version.strip()):
        raise DataError(
            f"data version {version!r} is not a DVC hash: expected the `md5` a .dvc file or dvc.lock records, "
            "or a registered version's `dvc_data_version` tag (32 hex digits; `.dir` at the end for a folder)"
        )
    return version.strip()


def dvc_remote(repo: Path | None = None) -> DvcRemote:
    """The remote data versions are pulled from (see the module's docstring for the order)."""
    if url := os.environ.get(REMOTE_ENV):
        options = {key: os.environ[var] for key, var in (("endpointurl", "AWS_ENDPOINT_URL"),
                   ("access_key_id", "AWS_ACCESS_KEY_ID"), ("secret_access_key", "AWS_SECRET_ACCESS_KEY"))
                   if os.environ.get(var) and url.startswith("s3://")}  # fmt: skip
        return DvcRemote("team", url, options, REMOTE_ENV)
    from dvc.config import Config
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        root = Path(Repo.find_root(str(repo or Path.cwd())))
    except NotDvcRepoError as err:
        raise DataError(
            f"no DVC remote to pull data versions from: set {REMOTE_ENV} "
            '(eval "$(shopfloor stack env)") or run in a DVC checkout with a default remote'
        ) from err
    config = Config(dvc_dir=str(root / ".dvc"))
    name = config["core"].get("remote")
    if not name or name not in config["remote"]:
        raise DataError(
            f"{root} has no default DVC remote: `shopfloor stack up` there sets the stack's, or "
            f"`dvc remote add -d NAME URL`; or set {REMOTE_ENV}"
        )
    options = dict(config["remote"][name])
    return DvcRemote(name, options.pop("url"), options, f"{root / '.dvc'}/config*")


def fetch_data_version(version: str, name: str, cache: Path, remote: DvcRemote | None = None) -> Path:
    """The files of data version `version` in `<cache>/data-versions/<md5>/<name>`, pulled from `remote`
    unless that folder already holds exactly them. DataError when the remote lacks the version."""
    version = checked_data_version(version)
    root = cache.resolve() / "data-versions"  # a DVC repository (no git): its cache, a folder per version
    folder = root / version.removesuffix(".dir") / name
    if folder.exists() and dvc_data_version(folder) == version:
        return folder  # complete: no remote needed
    remote = remote or dvc_remote()
    root.mkdir(parents=True, exist_ok=True)
    with (root / "pull.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one pull at a time: DVC's own repo lock would refuse, not wait
        _pull(version, folder, root, remote)
    found = dvc_data_version(folder)
    if found != version:
        raise DataError(
            f"data version {version} pulled from {remote} hashes to {found}; its files in {folder} changed"
        )
    return folder


def require_in_remote(version: str, remote: DvcRemote | None = None) -> DvcRemote:
    """The remote, when it holds `version` (for a folder: its listing, which `dvc push` uploads after
    its files); DataError otherwise. Lets a client refuse a hash before a worker is sent to pull it."""
    from dvc.exceptions import DvcException

    version, remote = checked_data_version(version), remote or dvc_remote()
    with tempfile.TemporaryDirectory() as scratch:
        try:
            with _scratch_repo(Path(scratch), remote) as repo, _quiet_dvc():
                found = repo.cloud.get_remote_odb(remote.name).exists(version)
        except (DvcException, OSError) as err:
            raise DataError(f"could not look for data version {version} in {remote}: {err}") from err
    if not found:
        raise DataError(_missing(version, remote))
    return remote


def _missing(version: str, remote: DvcRemote) -> str:
    return f"data version {version} is not (completely) in {remote}: push it with `dvc push` from the checkout that has it"


@contextmanager
def _quiet_dvc() -> Iterator[None]:
    """DVC's own lines (`Initialized DVC repository.`, its missing-files warning) stay out of the
    terminal and the worker's log: what went wrong is said once, by the DataError raised here."""
    loggers = [logging.getLogger(name) for name in ("dvc", "dvc_data", "dvc_objects")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _scratch_repo(root: Path, remote: DvcRemote):
    """A DVC repository without git at `root` (made once) that knows only `remote`, kept in memory."""
    from dvc.repo import Repo

    if not (root / ".dvc").is_dir():
        with _quiet_dvc():
            Repo.init(str(root), no_scm=True).close()
    config = {"core": {"remote": remote.name}, "remote": {remote.name: {"url": remote.url, **remote.options}}}
    return Repo(str(root), config=config)


def _pull(version: str, folder: Path, root: Path, remote: DvcRemote) -> None:
    from dvc.exceptions import CheckoutError, DvcException

    folder.parent.mkdir(parents=True, exist_ok=True)
    target = folder.parent / f"{folder.name}.dvc"
    target.write_text(f"outs:\n- md5: {version}\n  hash: md5\n  path: {folder.name}\n")
    try:
        with _scratch_repo(root, remote) as repo, _quiet_dvc():
            repo.pull(targets=[str(target)], force=True)
    except CheckoutError as err:
        raise DataError(_missing(version, remote)) from err
    except DvcException as err:
        raise DataError(f"data version {version} could not be pulled from {remote}: {err}") from err
