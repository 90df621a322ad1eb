"""Data versions: the DVC hash of a data folder, computed the way `dvc.lock` records it.

A model registered by the Prefect flow and one built by `dvc repro` carry the same hash for the
same files, so either can be traced back to `git log dvc.lock` and the DVC cache.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("DVC_NO_ANALYTICS", "1")


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
