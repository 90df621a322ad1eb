"""Sample images of a drifted window, asked of the device that saw them, for labelling.

A person (`shopfloor monitor samples DEVICE`) or the monitor (when an image device enters drift)
requests a window; the device learns of it in the answer to its next heartbeat, uploads up to
`MAX_FILES` of that window's images (`PUT /v1/devices/samples/{window}/{index}`, each at most
`MAX_FILE_BYTES`), then closes the request with how many it sent. Only requested windows of the
token's own device are accepted, so the disk a device can fill is bounded by what people asked for.
An upload is idempotent (the same bytes again are accepted once); other bytes under a stored index
are refused, never overwritten.

Files live under `<edge state>/samples/<device>/<window>/NN-<name>`, requests in `samples.db`
beside them. `export` copies a delivered window into a folder with a `manifest.csv` (path, label,
group) that the defect flow reads once the label column is filled in.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from inputs.images import IMAGE_SUFFIXES

MAX_FILES = 16  # images per requested window: enough to see what changed, small to label
MAX_FILE_BYTES = 4 * 1024 * 1024  # a camera frame, JPEG or PNG
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
WINDOW_ID = re.compile(r"^[A-Za-z0-9._:-]{1,120}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    device TEXT NOT NULL, window_id TEXT NOT NULL, requested_ms INTEGER NOT NULL, requested_by TEXT NOT NULL,
    state TEXT NOT NULL, files INTEGER, missing INTEGER, closed_ms INTEGER,
    PRIMARY KEY (device, window_id)
);
"""


class SampleError(ValueError):
    """An upload the server refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


@dataclass(frozen=True)
class SampleRequest:
    device: str
    window_id: str
    requested_by: str
    state: str  # requested | delivered | unavailable
    files: int | None
    missing: int | None


class SampleStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.root / "samples.db", timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=10000")
            self._local.db = db
        return db

    # -- requests -------------------------------------------------------------------------------
    def request(self, device: str, window_id: str, by: str = "person") -> SampleRequest:
        """Ask `device` for images of `window_id` (again, if it was unavailable); idempotent otherwise."""
        if not WINDOW_ID.fullmatch(window_id):
            raise SampleError(422, f"window id {window_id!r} is not a window id")
        self._db().execute(
            "INSERT INTO requests (device, window_id, requested_ms, requested_by, state) VALUES (?, ?, ?, ?, 'requested') "
            "ON CONFLICT (device, window_id) DO UPDATE SET state = 'requested', requested_ms = excluded.requested_ms "
            "WHERE requests.state = 'unavailable'",
            (device, window_id, int(time.time() * 1000), by),
        )
        return self.get(device, window_id)

    def get(self, device: str, window_id: str) -> SampleRequest | None:
        row = self._db().execute("SELECT device, window_id, requested_by, state, files, missing FROM requests "
                                 "WHERE device = ? AND window_id = ?", (device, window_id)).fetchone()  # fmt: skip
        return SampleRequest(*row) if row else None

    def pending(self, device: str, limit: int = 4) -> list[str]:
        """Windows `device` still has to send (oldest first): what its heartbeat answer lists."""
        rows = self._db().execute("SELECT window_id FROM requests WHERE device = ? AND state = 'requested' "
                                  "ORDER BY requested_ms LIMIT ?", (device, limit))  # fmt: skip
        return [r[0] for r in rows]

    # -- uploads --------------------------------------------------------------------------------
    def folder(self, device: str, window_id: str) -> Path:
        return self.root / device / window_id

    def _open_request(self, device: str, window_id: str) -> None:
        found = self.get(device, window_id) if WINDOW_ID.fullmatch(window_id) else None
        if found is None or found.state != "requested":
            raise SampleError(404, "no open sample request for this window of this device")

    def put(self, device: str, window_id: str, index: int, name: str, body: bytes) -> str:
        """Store one image: 'stored', or 'duplicate' for the same bytes again; SampleError otherwise."""
        self._open_request(device, window_id)
        if not 0 <= index < MAX_FILES:
            raise SampleError(422, f"index must be 0-{MAX_FILES - 1}")
        if not FILE_NAME.fullmatch(name) or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise SampleError(422, "x-file-name must be a plain image file name (letters, digits, ._-)")
        if not body or len(body) > MAX_FILE_BYTES:
            raise SampleError(413, f"an image must be 1 to {MAX_FILE_BYTES} bytes")
        _check_image(body)
        folder = self.folder(device, window_id)
        folder.mkdir(parents=True, exist_ok=True)
        taken = list(folder.glob(f"{index:02d}-*"))
        if taken:
            if taken[0].name == f"{index:02d}-{name}" and _sha256(taken[0].read_bytes()) == _sha256(body):
                return "duplicate"
            raise SampleError(409, f"index {index} of this window already holds another image")
        partial = folder / f".{index:02d}.partial"
        partial.write_bytes(body)
        partial.replace(folder / f"{index:02d}-{name}")
        return "stored"

    def close(self, device: str, window_id: str, files: int, missing: int) -> SampleRequest:
        """The device says it sent `files` images (and could not find `missing` more)."""
        self._open_request(device, window_id)
        stored = len(self.files(device, window_id))
        if stored != files:
            raise SampleError(409, f"{files} image(s) announced, {stored} stored: send the rest first")
        state = "delivered" if files else "unavailable"
        self._db().execute("UPDATE requests SET state = ?, files = ?, missing = ?, closed_ms = ? WHERE device = ? AND window_id = ?",
                           (state, files, missing, int(time.time() * 1000), device, window_id))  # fmt: skip
        return self.get(device, window_id)

    def files(self, device: str, window_id: str) -> list[Path]:
        folder = self.folder(device, window_id)
        return sorted(p for p in folder.glob("[0-9][0-9]-*") if p.is_file()) if folder.exists() else []

    # -- for labelling --------------------------------------------------------------------------
    def export(self, device: str, window_id: str, out: Path) -> Path:
        """Copy a delivered window's images to `out` with a manifest.csv (path, label, group); the
        label column is left empty for a person to fill in. Returns the manifest's path."""
        out.mkdir(parents=True, exist_ok=True)
        group = f"{device}-{window_id}".replace(":", "_")  # one window stays on one side of a split
        rows = []
        for path in self.files(device, window_id):
            target = out / f"{group}-{path.name}"
            if not target.exists():  # a person may already be labelling: never overwrite
                shutil.copy2(path, target)
            rows.append({"path": target.name, "label": "", "group": group})
        manifest = out / "manifest.csv"
        if manifest.exists():  # keep every row (and label) already there; add only new images
            with manifest.open() as handle:
                kept = list(csv.DictReader(handle))
            rows = kept + [r for r in rows if r["path"] not in {k["path"] for k in kept}]
        with manifest.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, ["path", "label", "group"])
            writer.writeheader()
            writer.writerows(rows)
        return manifest


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_image(body: bytes) -> None:
    """An image Pillow recognises (header and structure only: nothing is decoded into memory)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(body)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SampleError(422, f"not a readable image ({type(err).__name__})") from None
