"""What the monitor remembers between cycles: how far it read, each device's recent flags and state,
every assessment (for `shopfloor monitor status` and the cycle report), and which drift episodes
were announced. SQLite beside the telemetry it reads (the edge state folder).

A device's drift state is saved when its windows are judged and announced (the event that starts
its retraining) a step later; an episode counts as announced only once its event went out, so a
cycle that dies in between leaves it for the next cycle instead of losing the retraining."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from monitor.detect import Assessment

SCHEMA = """
CREATE TABLE IF NOT EXISTS progress (model TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    device TEXT NOT NULL, model TEXT NOT NULL, version TEXT, state TEXT NOT NULL, flags TEXT NOT NULL,
    since TEXT, last_window TEXT, statistic TEXT, q_value REAL, accuracy REAL, explanation TEXT,
    PRIMARY KEY (device, model)
);
CREATE TABLE IF NOT EXISTS announced (
    device TEXT NOT NULL, model TEXT NOT NULL, since TEXT NOT NULL, PRIMARY KEY (device, model, since)
);
CREATE TABLE IF NOT EXISTS assessments (
    device TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, window_id TEXT NOT NULL, ended TEXT,
    tests TEXT NOT NULL, p_value REAL, q_value REAL, flagged INTEGER, accuracy REAL, explanation TEXT,
    PRIMARY KEY (device, model, window_id)
);
"""


@dataclass(frozen=True)
class DeviceState:
    device: str
    model: str
    version: str | None
    state: str  # ok | watch | drift
    flags: list[bool]
    since: str | None  # when the current state began (the first flagged window's end)
    last_window: str | None
    statistic: str | None  # the strongest test of the last window, "name=effect"
    q_value: float | None
    accuracy: float | None
    explanation: str | None


class MonitorStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self._local = path, threading.local()
        db = self._db()
        before = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        db.executescript(SCHEMA)
        if (
            "devices" in before and "announced" not in before
        ):  # a store from before: its drifts were announced
            for state in self.unannounced():
                self.announce(state)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    def last_seq(self, model: str) -> int:
        row = self._db().execute("SELECT last_seq FROM progress WHERE model = ?", (model,)).fetchone()
        return row[0] if row else 0

    def read_up_to(self, model: str, seq: int) -> None:
        self._db().execute("INSERT INTO progress VALUES (?, ?) ON CONFLICT (model) DO UPDATE SET last_seq = excluded.last_seq",
                           (model, seq))  # fmt: skip

    def state(self, device: str, model: str) -> DeviceState | None:
        row = (
            self._db()
            .execute("SELECT * FROM devices WHERE device = ? AND model = ?", (device, model))
            .fetchone()
        )
        return _state(row) if row else None

    def states(self) -> list[DeviceState]:
        return [_state(r) for r in self._db().execute("SELECT * FROM devices ORDER BY model, device")]

    def unannounced(self) -> list[DeviceState]:
        """Devices in drift whose episode (its `since`) has had no event yet."""
        return [s for s in self.states() if s.state == "drift" and not self._announced(s)]

    def _announced(self, state: DeviceState) -> bool:
        query = "SELECT 1 FROM announced WHERE device = ? AND model = ? AND since = ?"
        return (
            self._db().execute(query, (state.device, state.model, state.since or "")).fetchone() is not None
        )

    def announce(self, state: DeviceState) -> None:
        """Record that the event of this drift episode went out."""
        self._db().execute(
            "INSERT OR IGNORE INTO announced VALUES (?, ?, ?)", (state.device, state.model, state.since or "")
        )

    def save(self, state: DeviceState, assessment: Assessment) -> None:
        db = self._db()
        db.execute("INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (state.device, state.model, state.version, state.state, json.dumps(state.flags), state.since,
                    state.last_window, state.statistic, state.q_value, state.accuracy, state.explanation))  # fmt: skip
        db.execute("INSERT OR REPLACE INTO assessments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (assessment.device, assessment.model, assessment.version, assessment.window_id, assessment.ended,
                    json.dumps(assessment.tests), assessment.p_value, assessment.q_value, int(assessment.flagged),
                    assessment.accuracy, assessment.explanation))  # fmt: skip


def _state(row: tuple) -> DeviceState:
    device, model, version, state, flags, since, last, statistic, q, accuracy, explanation = row
    return DeviceState(
        device, model, version, state, json.loads(flags), since, last, statistic, q, accuracy, explanation
    )
