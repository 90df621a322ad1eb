"""Enrolled devices, their tokens (stored as sha256 hashes, never in clear), groups, what each was
told to run and what it reports running, rollout stages, and the versions the server refused.

SQLite in the edge state folder; WAL mode so the server's threads read while one writes. Names and
groups are checked here, so neither the CLI nor the server can store a path or a typo.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError, RegistryError

DEVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CANARY, ALL = "canary", "all"
GROUPS = (CANARY, ALL)  # canary devices get an approved version first; the rest once it is rolled out

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    name TEXT PRIMARY KEY, token_hash TEXT UNIQUE NOT NULL, device_group TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0, enrolled_ms INTEGER NOT NULL, last_seen_ms INTEGER,
    model TEXT, running_version TEXT, last_status TEXT
);
CREATE TABLE IF NOT EXISTS assignments (
    device TEXT NOT NULL, model TEXT NOT NULL, assigned_version TEXT, running_version TEXT,
    status TEXT, assigned_ms INTEGER, reported_ms INTEGER, PRIMARY KEY (device, model)
);
CREATE TABLE IF NOT EXISTS rollouts (
    model TEXT NOT NULL, version TEXT NOT NULL, stage TEXT NOT NULL, updated_ms INTEGER NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS canaries (
    model TEXT NOT NULL, version TEXT NOT NULL, device TEXT NOT NULL, added_ms INTEGER NOT NULL,
    PRIMARY KEY (model, version, device)
);
CREATE TABLE IF NOT EXISTS refusals (
    model TEXT NOT NULL, version TEXT NOT NULL, reason TEXT NOT NULL, first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (model, version)
);
"""


@dataclass(frozen=True)
class Device:
    name: str
    group: str
    revoked: bool
    enrolled_ms: int
    last_seen_ms: int | None


@dataclass(frozen=True)
class Assignment:
    device: str
    model: str
    assigned_version: str | None  # what the server last told the device to run
    running_version: str | None  # what the device last reported running
    status: str | None


@dataclass(frozen=True)
class Refusal:
    model: str
    version: str
    reason: str
    first_ms: int
    last_ms: int
    count: int


def token_hash(token: str) -> str:
    """Tokens are 256 random bits, so a plain sha256 is enough (no password-style stretching)."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_device_name(name: str) -> str:
    if not DEVICE_NAME.fullmatch(name):
        raise ConfigError(
            f"device name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_group(group: str, groups: tuple[str, ...] = GROUPS) -> str:
    if group not in groups:
        raise ConfigError(f"unknown device group {group!r}; choose one of: {', '.join(groups)}")
    return group


def _now() -> int:
    return int(time.time() * 1000)


class DeviceStore:
    def __init__(self, path: Path, groups: tuple[str, ...] = GROUPS, contact_write_s: float = 60.0) -> None:
        self.path, self.groups, self.contact_write_s = path, groups, contact_write_s
        self._written: dict[
            tuple[str, str], tuple[str, float]
        ] = {}  # (device, model): (version, when written)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=10000")
            self._local.db = db
        return db

    # -- enrolment ------------------------------------------------------------------------------
    def enroll(self, name: str, group: str = ALL) -> str:
        """Add a device, or give a revoked one a new token (the old one stays dead); returns the token,
        shown once and stored only as a hash. An active device must be revoked first."""
        check_device_name(name), check_group(group, self.groups)
        token = secrets.token_urlsafe(32)
        row = self._db().execute("SELECT revoked FROM devices WHERE name = ?", (name,)).fetchone()
        if row is not None and not row[0]:
            raise RegistryError(f"device {name!r} is already enrolled; revoke it first to issue a new token")
        if row is None:
            self._db().execute(
                "INSERT INTO devices (name, token_hash, device_group, enrolled_ms) VALUES (?, ?, ?, ?)",
                (name, token_hash(token), group, _now()),
            )
        else:
            self._db().execute(
                "UPDATE devices SET token_hash = ?, device_group = ?, revoked = 0, enrolled_ms = ? WHERE name = ?",
                (token_hash(token), group, _now(), name),
            )
        return token

    def revoke(self, name: str) -> None:
        if self._db().execute("UPDATE devices SET revoked = 1 WHERE name = ?", (name,)).rowcount == 0:
            raise RegistryError(f"no enrolled device named {name!r}")

    def authenticate(self, token: str) -> Device | None:
        """The device holding `token`, or None when unknown or revoked."""
        row = (
            self._db()
            .execute(
                "SELECT name, device_group, revoked, enrolled_ms, last_seen_ms FROM devices WHERE token_hash = ? AND revoked = 0",
                (token_hash(token),),
            )
            .fetchone()
        )
        return Device(row[0], row[1], bool(row[2]), row[3], row[4]) if row else None

    def devices(self) -> list[Device]:
        rows = self._db().execute(
            "SELECT name, device_group, revoked, enrolled_ms, last_seen_ms FROM devices ORDER BY device_group, name"
        )
        return [Device(r[0], r[1], bool(r[2]), r[3], r[4]) for r in rows]

    def has_group(self, group: str) -> bool:
        found = self._db().execute("SELECT 1 FROM devices WHERE device_group = ? AND revoked = 0", (group,))
        return found.fetchone() is not None

    # -- what each device runs ------------------------------------------------------------------
    def assigned(self, name: str, model: str, version: str) -> None:
        """Remember what the server told `name` to run (and when it last asked). A device polling for
        the same version is written at most every `contact_write_s`: its last contact is known to
        that precision, and 1000 devices polling every 30 s cost no disk write per request."""
        key, now_s = (name, model), time.monotonic()
        last = self._written.get(key)
        if last is not None and last[0] == version and now_s - last[1] < self.contact_write_s:
            return
        self._written[key] = (version, now_s)
        now = _now()
        self._db().execute(
            "INSERT INTO assignments (device, model, assigned_version, assigned_ms) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device, model) DO UPDATE SET assigned_version = excluded.assigned_version, assigned_ms = excluded.assigned_ms",
            (name, model, version, now),
        )
        self._db().execute("UPDATE devices SET last_seen_ms = ? WHERE name = ?", (now, name))

    def reported(self, name: str, model: str, version: str | None, status: str) -> None:
        """What the device says it runs (its heartbeat)."""
        now = _now()
        self._db().execute(
            "INSERT INTO assignments (device, model, running_version, status, reported_ms) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (device, model) DO UPDATE SET running_version = excluded.running_version, "
            "status = excluded.status, reported_ms = excluded.reported_ms",
            (name, model, version, status, now),
        )
        self._db().execute("UPDATE devices SET last_seen_ms = ? WHERE name = ?", (now, name))

    def assignment(self, name: str, model: str) -> Assignment | None:
        row = (
            self._db()
            .execute(
                "SELECT device, model, assigned_version, running_version, status FROM assignments WHERE device = ? AND model = ?",
                (name, model),
            )
            .fetchone()
        )
        return Assignment(*row) if row else None

    def assignments(self) -> list[Assignment]:
        rows = self._db().execute(
            "SELECT device, model, assigned_version, running_version, status FROM assignments ORDER BY device, model"
        )
        return [Assignment(*r) for r in rows]

    # -- rollouts and refusals ------------------------------------------------------------------
    def rollout_stage(self, model: str, version: str) -> str | None:
        row = self._db().execute(
            "SELECT stage FROM rollouts WHERE model = ? AND version = ?", (model, version)
        )
        found = row.fetchone()
        return found[0] if found else None

    def set_rollout(self, model: str, version: str, stage: str) -> None:
        if stage not in GROUPS:
            raise ConfigError(f"rollout stage must be 'canary' or 'all', got {stage!r}")
        self._db().execute(
            "INSERT INTO rollouts VALUES (?, ?, ?, ?) ON CONFLICT (model, version) DO UPDATE SET stage = excluded.stage, updated_ms = excluded.updated_ms",
            (model, version, stage, _now()),
        )

    def add_canaries(self, model: str, version: str, names: list[str]) -> None:
        """Make `names` canaries of one version, besides the canary group: a version retrained for a
        drifted device reaches that device first. Harmless for a version that never becomes champion."""
        for name in names:
            self._db().execute(
                "INSERT OR IGNORE INTO canaries VALUES (?, ?, ?, ?)",
                (model, version, check_device_name(name), _now()),
            )

    def canaries(self, model: str, version: str) -> set[str]:
        rows = self._db().execute(
            "SELECT device FROM canaries WHERE model = ? AND version = ?", (model, version)
        )
        return {r[0] for r in rows}

    def rollouts(self) -> list[tuple[str, str, str, int]]:
        return list(
            self._db().execute(
                "SELECT model, version, stage, updated_ms FROM rollouts ORDER BY model, updated_ms"
            )
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

    def latest_rollout(self, model: str) -> str | None:
        """The version this server rolled out last, at any stage: the last approved one it served."""
        row = (
            self._db()
            .execute(
                "SELECT version FROM rollouts WHERE model = ? ORDER BY updated_ms DESC LIMIT 1", (model,)
            )
            .fetchone()
        )
        return row[0] if row else None

    def refuse(self, model: str, version: str, reason: str) -> bool:
        """Record a refusal to serve `version`; True the first time it is refused."""
        now = _now()
        cursor = self._db().execute(
            "INSERT INTO refusals VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (model, version) "
            "DO UPDATE SET last_ms = excluded.last_ms, count = count + 1 RETURNING count",
            (model, version, reason, now, now),
        )
        return cursor.fetchone()[0] == 1

    def refusals(self) -> list[Refusal]:
        return [Refusal(*r) for r in self._db().execute("SELECT * FROM refusals ORDER BY model, first_ms")]
