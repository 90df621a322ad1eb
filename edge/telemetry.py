"""Telemetry windows from devices: checked against a schema with hard limits, stored once, durably.

`POST /v1/devices/telemetry` (edge.server) takes one window (core.telemetry) per request. The
device comes from its token, never from the body; a body naming another device is refused. Window
ids are idempotent per device: the same window sent again (a device retrying after a lost reply,
or replaying its offline buffer) is accepted and not stored twice; a different window under an id
already used is refused. SQLite in the edge state folder (the team database when one is
configured), WAL mode so the monitor reads while the server writes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.telemetry import LIMITS

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
Finite = Annotated[float, Field(allow_inf_nan=False)]
Values = Annotated[list[Finite], Field(max_length=LIMITS["values"])]
Row = Annotated[list[Finite], Field(max_length=LIMITS["feature_dims"])]
ImageStat = Literal["brightness", "contrast", "blur", "clipped"]  # core.telemetry.IMAGE_STATS


class TelemetryWindow(BaseModel):
    """One window as a device sends it; every list is bounded, every number finite."""

    model_config = ConfigDict(extra="forbid")
    window_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,120}$")
    device: str | None = Field(None, max_length=64)  # when given, it must be the token's device
    model: str = Field(pattern=NAME)
    version: str = Field(pattern=r"^\d{1,12}$")
    kind: Literal["image-classifier", "image-anomaly", "vibration-anomaly"]
    started: str = Field(max_length=40)
    ended: str = Field(max_length=40)
    items: int = Field(ge=0, le=1_000_000)
    dropped_windows: int = Field(0, ge=0, le=1_000_000)
    class_counts: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, max_length=LIMITS["classes"]
    )
    top_probability: Values = Field(default_factory=list)
    top_probability_histogram: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list, max_length=20)
    entropy_histogram: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list, max_length=20)
    image_stats: dict[ImageStat, Values] = Field(default_factory=dict)
    embeddings: list[Annotated[list[Finite], Field(max_length=LIMITS["embedding_dims"])]] = Field(
        default_factory=list, max_length=LIMITS["embeddings"]
    )
    scores: Values = Field(default_factory=list)
    alarms: int = Field(0, ge=0)
    features: list[Row] = Field(default_factory=list, max_length=LIMITS["features"])


@dataclass(frozen=True)
class StoredWindow:
    device: str
    window: TelemetryWindow
    received_ms: int


SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    device TEXT NOT NULL, window_id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL,
    digest TEXT NOT NULL, payload TEXT NOT NULL, received_ms INTEGER NOT NULL, seq INTEGER PRIMARY KEY AUTOINCREMENT,
    UNIQUE (device, window_id)
);
CREATE INDEX IF NOT EXISTS windows_by_model ON windows (model, seq);
"""


class TelemetryStore:
    def __init__(self, path: Path) -> None:
        self.path = path
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

    def add(self, device: str, window: TelemetryWindow) -> str:
        """'stored', or 'duplicate' for a window already stored under the same id with the same content;
        ValueError when the id is taken by different content."""
        payload = window.model_dump_json(exclude={"device"})
        digest = hashlib.sha256(payload.encode()).hexdigest()
        try:
            self._db().execute(
                "INSERT INTO windows (device, window_id, model, version, digest, payload, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    device,
                    window.window_id,
                    window.model,
                    window.version,
                    digest,
                    payload,
                    int(time.time() * 1000),
                ),
            )
            return "stored"
        except sqlite3.IntegrityError:
            row = self._db().execute(
                "SELECT digest FROM windows WHERE device = ? AND window_id = ?", (device, window.window_id)
            )
            if row.fetchone()[0] == digest:
                return "duplicate"
            raise ValueError(f"window {window.window_id!r} was already stored with other content") from None

    def windows(
        self, model: str | None = None, after_seq: int = 0, limit: int = 100_000, device: str | None = None
    ) -> list[tuple[int, StoredWindow]]:
        """Stored windows in arrival order (seq), optionally of one model or device, after a sequence number."""
        query = "SELECT seq, device, payload, received_ms FROM windows WHERE seq > ?"
        args: list = [after_seq]
        for column, value in (("model", model), ("device", device)):
            if value is not None:
                query, args = query + f" AND {column} = ?", [*args, value]
        rows = self._db().execute(query + " ORDER BY seq LIMIT ?", (*args, limit))
        return [(seq, StoredWindow(device, TelemetryWindow.model_validate(json.loads(payload)), received))
                for seq, device, payload, received in rows]  # fmt: skip

    def get(self, device: str, window_id: str) -> TelemetryWindow | None:
        row = self._db().execute("SELECT payload FROM windows WHERE device = ? AND window_id = ?",
                                 (device, window_id)).fetchone()  # fmt: skip
        return TelemetryWindow.model_validate(json.loads(row[0])) if row else None

    def count(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM windows").fetchone()[0]
