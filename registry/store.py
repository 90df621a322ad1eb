"""A local store that keeps working after its folder is moved or copied.

MLflow writes absolute paths into a SQLite store (experiment artifact locations, run artifact URIs,
logged-model locations), so a project folder moved to another disk, or copied to a colleague's
machine, would point at the old place. The store remembers its folder in `.shopfloor/store.json`
beside mlflow.db; when it is opened from somewhere else, every stored path under the old folder is
rewritten to the new one (one transaction, any table, prefix matches only), and the move is said
in one line. Other shopfloor state records paths relative to the store's folder (quarantine
entries, frozen evaluation sets), so nothing else needs rewriting.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

log = logging.getLogger("shopfloor.store")
RECORD = Path(".shopfloor") / "store.json"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///...` store, else None."""
    return Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith("sqlite:///") else None


def store_folder(tracking_uri: str) -> Path | None:
    """The folder that holds a local store (its project), or None for a server store."""
    path = sqlite_path(tracking_uri)
    return path.resolve().parent if path is not None else None


def _rewrite(db: Path, old: str, new: str) -> int:
    """Replace the prefix `old` by `new` in every text value that starts with it (plain or file:// URI)."""
    changed = 0
    with sqlite3.connect(db) as connection:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [
                r[1]
                for r in connection.execute(f'PRAGMA table_info("{table}")')
                if "CHAR" in r[2].upper() or "TEXT" in r[2].upper()
            ]
            for column in columns:
                for prefix, replacement in ((f"file://{old}", f"file://{new}"), (old, new)):
                    cursor = connection.execute(
                        f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) WHERE substr("{column}", 1, ?) = ?',
                        (replacement, len(prefix) + 1, len(prefix), prefix),
                    )
                    changed += cursor.rowcount
    return changed


def follow_moves(tracking_uri: str) -> None:
    """Record where a local store lives; after a move or copy, point its paths at the new folder."""
    db = sqlite_path(tracking_uri)
    if db is None or not db.is_file():
        return
    folder, record = db.resolve().parent, db.resolve().parent / RECORD
    old = json.loads(record.read_text())["folder"] if record.is_file() else None
    if old is not None and old != str(folder):
        rows = _rewrite(db, old.rstrip("/") + "/", str(folder) + "/")
        log.warning("the store moved from %s to %s: %d stored path(s) now point here", old, folder, rows)
    if old != str(folder):
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"folder": str(folder)}))


def relative_to_store(path: Path, tracking_uri: str) -> str:
    """`path` as recorded with a run: relative to the store's folder when inside it, else absolute."""
    folder, resolved = store_folder(tracking_uri), Path(path).resolve()
    return str(resolved.relative_to(folder)) if folder and resolved.is_relative_to(folder) else str(resolved)


def from_store(recorded: str, tracking_uri: str) -> Path:
    """A recorded path back as a real one (see `relative_to_store`)."""
    path, folder = Path(recorded), store_folder(tracking_uri)
    return path if path.is_absolute() or folder is None else folder / path
