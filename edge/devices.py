"""Enrolled devices, their tokens (stored as sha256 hashes, never in clear), groups and last contact.

SQLite in the edge state folder; WAL mode so the server's threads read while one writes.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import RegistryError

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    name TEXT PRIMARY KEY, token_hash TEXT UNIQUE NOT NULL, device_group TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0, enrolled_ms INTEGER NOT NULL, last_seen_ms INTEGER,
    model TEXT, running_version TEXT, last_status TEXT
);
CREATE TABLE IF NOT EXISTS rollouts (
    model TEXT NOT NULL, version TEXT NOT NULL, stage TEXT NOT NULL, updated_ms INTEGER NOT NULL,
    PRIMARY KEY (model, version)
);
"""


@dataclass(frozen=True)
class Device:
    name: str
    group: str
    revoked: bool
    enrolled_ms: int
    last_seen_ms: int | None
    model: str | None
    running_version: str | None
    last_status: str | None


def token_hash(token: str) -> str:
    """Tokens are 256 random bits, so a plain sha256 is enough (no password-style stretching)."""
    return hashlib.sha256(token.encode()).hexdigest()


class DeviceStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._db() as db:
            db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=10000")
            self._local.db = db
        return db

    def enroll(self, name: str, group: str = "all") -> str:
        """Add a device; returns its token (shown once, stored only as a hash)."""
        token = secrets.token_urlsafe(32)
        try:
            self._db().execute(
                "INSERT INTO devices (name, token_hash, device_group, enrolled_ms) VALUES (?, ?, ?, ?)",
                (name, token_hash(token), group, int(time.time() * 1000)),
            )
        except sqlite3.IntegrityError:
            raise RegistryError(
                f"device {name!r} is already enrolled; revoke it first to issue a new token"
            ) from None
        return token

    def revoke(self, name: str) -> None:
        if self._db().execute("UPDATE devices SET revoked = 1 WHERE name = ?", (name,)).rowcount == 0:
            raise RegistryError(f"no enrolled device named {name!r}")

    def authenticate(self, token: str) -> Device | None:
        """The device holding `token`, or None when unknown or revoked."""
        row = (
            self._db()
            .execute("SELECT * FROM devices WHERE token_hash = ? AND revoked = 0", (token_hash(token),))
            .fetchone()
        )
        return _device(row) if row else None

    def seen(
        self, name: str, model: str | None = None, version: str | None = None, status: str | None = None
    ) -> None:
        self._db().execute(
            "UPDATE devices SET last_seen_ms = ?, model = COALESCE(?, model), running_version = COALESCE(?, running_version),"
            " last_status = COALESCE(?, last_status) WHERE name = ?",
            (int(time.time() * 1000), model, version, status, name),
        )

    def devices(self) -> list[Device]:
        return [_device(r) for r in self._db().execute("SELECT * FROM devices ORDER BY device_group, name")]

    def has_group(self, group: str) -> bool:
        return (
            self._db()
            .execute("SELECT 1 FROM devices WHERE device_group = ? AND revoked = 0", (group,))
            .fetchone()
            is not None
        )

    def rollout_stage(self, model: str, version: str) -> str | None:
        row = (
            self._db()
            .execute("SELECT stage FROM rollouts WHERE model = ? AND version = ?", (model, version))
            .fetchone()
        )
        return row[0] if row else None

    def set_rollout(self, model: str, version: str, stage: str) -> None:
        self._db().execute(
            "INSERT INTO rollouts VALUES (?, ?, ?, ?) ON CONFLICT (model, version) DO UPDATE SET stage = excluded.stage, updated_ms = excluded.updated_ms",
            (model, version, stage, int(time.time() * 1000)),
        )

    def stable_version(self, model: str) -> str | None:
        """The newest version rolled out to every device."""
        row = (
            self._db()
            .execute(
                "SELECT version FROM rollouts WHERE model = ? AND stage = 'all' ORDER BY updated_ms DESC LIMIT 1",
                (model,),
            )
            .fetchone()
        )
        return row[0] if row else None


def _device(row: tuple) -> Device:
    name, _, group, revoked, enrolled, seen, model, version, status = row
    return Device(name, group, bool(revoked), enrolled, seen, model, version, status)
