"""`shopfloor device run`: the agent on a camera box or sensor gateway (torch-free, the device extra).

It watches an inbox folder (the camera or data logger drops files there) or takes the files it is
given, runs the version of the model it pulled, appends one result per file to the outbox (JSON
lines: class, probabilities and reject decision; anomaly score, reject decision and the hottest spot of
an image anomaly model; or alarms and explanations), checks the signed
manifest every `check_every_s` and switches to a new approved version atomically, sends
heartbeats, and summarises its work in telemetry windows (core.telemetry) that it sends to the
edge server.

Restart-safe by construction: the outbox is the ledger. A result line is written to the operating
system before its file leaves the inbox (into inbox/done/), so a killed agent, restarted, skips
files whose result it already wrote and never writes one twice; a half-written last line is
dropped. The outbox is synced to disk at every window's close and at least every `sync_every_s`,
not per file (an fsync per image cost a third of the model's time): after a power cut, a file in
inbox/done/ whose result line did not reach the disk goes back to the inbox and is scored again. The
open telemetry window is rebuilt from the results after the last closed one. Offline, closed
windows wait on disk (at most `buffer_windows`, oldest dropped first and counted in the next
window) and go out when the server answers again.

When the server's heartbeat answer asks for the images of a closed window (someone wants to label
what a drifted camera saw), the agent sends up to 16 of that window's files from inbox/done/.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.card import IMAGE_ANOMALY, IMAGE_CLASSIFIER, IMAGE_KINDS, read_card
from core.telemetry import WindowBuilder
from data_checks.vibration.config import SensorRules
from device.client import EdgeClient, PullError, installed_model
from device.image_anomaly import AnomalyImageModel
from device.images import ImageModel
from device.telemetry import TelemetryOutbox
from device.vibration import score_file
from inputs.images import IMAGE_SUFFIXES, channels_first, luminance

SENSOR_SUFFIXES = {".npz", ".csv", ".parquet"}
FEATURE_ROWS_PER_FILE = 64  # feature vectors kept per sensor file (evenly spaced): bounds a result line
KEEP_WINDOW_FILES = 1000  # closed windows whose file lists are kept for sample requests
SAMPLES_PER_WINDOW = 16  # edge.samples.MAX_FILES


@dataclass(frozen=True)
class AgentConfig:
    model: str
    dest: Path  # installed models (device.client layout)
    outbox: Path  # results, JSON lines
    state: Path  # telemetry buffer and the agent's id
    inbox: Path | None = None
    check_every_s: float = 60.0
    window_items: int = 64
    window_minutes: float = 5.0
    buffer_windows: int = 500


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Ledger:
    """The outbox as the record of what was done: which files (by name and content) and windows."""

    path: Path
    done: set[tuple[str, str]] = field(default_factory=set)
    open_window: list[dict] = field(default_factory=list)  # results since the last closed window
    windows: int = 0
    window_files: dict[str, list[str]] = field(default_factory=dict)  # recent closed windows' scored files
    sync_every_s: float = 1.0
    synced: float = field(default_factory=time.monotonic)

    def _record(self, record: dict) -> None:
        if record["type"] == "window":
            self.window_files[record["window_id"]] = [r["file"] for r in self.open_window if "error" not in r]
            if len(self.window_files) > KEEP_WINDOW_FILES:
                self.window_files.pop(next(iter(self.window_files)))
            self.windows, self.open_window = self.windows + 1, []
        else:
            self.done.add((record["file"], record["sha256"]))
            self.open_window.append(record)

    @classmethod
    def load(cls, path: Path) -> Ledger:
        ledger = cls(path)
        if not path.exists():
            return ledger
        raw = path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]
        if len(complete) != len(raw):  # killed mid-line: that result was not delivered, drop it
            path.write_bytes(complete)
        for line in complete.decode().splitlines():
            ledger._record(json.loads(line))
        return ledger

    def append(self, record: dict, sync: bool = False) -> None:
        self.append_many([record], sync)

    def append_many(self, records: list[dict], sync: bool = False) -> None:
        """Hand the lines to the operating system before anyone acts on them (a killed process loses
        none); sync them to disk when asked and at least every `sync_every_s` (a power cut loses at
        most that much, and `Agent.recover` scores those files again)."""
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write("".join(json.dumps(record) + "\n" for record in records))
            handle.flush()
            if sync or time.monotonic() - self.synced >= self.sync_every_s:
                os.fsync(handle.fileno())
                self.synced = time.monotonic()
        for record in records:
            self._record(record)


class Agent:
    def __init__(self, cfg: AgentConfig, client: EdgeClient | None) -> None:
        self.cfg, self.client = cfg, client
        self.ledger = Ledger.load(cfg.outbox)
        self.recover()
        self.outbox = TelemetryOutbox(cfg.state / "telemetry", cfg.buffer_windows)
        self.instance = self._instance_id()
        self.model_path: Path | None = None
        self.version = self.kind = None
        self.scorer = None
        self.window: WindowBuilder | None = None
        self.window_started = time.monotonic()
        self.last_check = float("-inf")

    def recover(self) -> list[str]:
        """Files in inbox/done/ without a result line (their line was lost in a power cut before it
        reached the disk) go back to the inbox, to be scored again; returns their names."""
        done = self.cfg.inbox / "done" if self.cfg.inbox is not None else None
        if done is None or not done.is_dir():
            return []
        have = {name for name, _ in self.ledger.done}
        back = [p for p in done.iterdir() if p.is_file() and p.name not in have]
        for path in back:
            os.replace(path, self.cfg.inbox / path.name)
        return [p.name for p in back]

    def _instance_id(self) -> str:
        """A random id made once per installation: window ids stay unique if the outbox is ever reset."""
        path = self.cfg.state / "agent_id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(4))
        return path.read_text().strip()

    # -- the model ------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Every `check_every_s`: pull (verified, atomic install) and switch when the version changed."""
        if not force and time.monotonic() - self.last_check < self.cfg.check_every_s:
            return
        self.last_check = time.monotonic()
        if self.client is not None:
            with contextlib.suppress(PullError):  # offline or refused: keep running what is installed
                self.client.pull(self.cfg.model)
            self.outbox.send(self.client)
            self.send_samples()
        path = installed_model(self.cfg.dest, self.cfg.model).resolve()
        if path != self.model_path:
            self._load(path)

    def _load(self, path: Path) -> None:
        """Build the new scorer first, then swap: results never come from a half-loaded model."""
        card = read_card(path)
        scorers = {IMAGE_CLASSIFIER: ImageModel, IMAGE_ANOMALY: AnomalyImageModel}
        scorer = scorers[card["kind"]](path) if card["kind"] in scorers else path
        self._close_window()  # a window holds one version
        self.model_path, self.kind, self.scorer = path, card["kind"], scorer
        self.version = (
            json.loads((path.parent / "manifest.json").read_text())["version"]
            if (path.parent / "manifest.json").exists()
            else "0"
        )
        classes = len(card["model"].get("classes", [])) if card["kind"] == IMAGE_CLASSIFIER else 0
        self.window = WindowBuilder(card["kind"], classes=classes, seed=self.ledger.windows)
        self.window_started = time.monotonic()
        for record in self.ledger.open_window:  # a restart: rebuild the open window from its results
            if record.get("version") == self.version:
                self._count(record)

    # -- results ------------------------------------------------------------------------------
    def _count(self, record: dict) -> None:
        """Add one result's telemetry to the open window."""
        data = record["telemetry"]
        if self.kind == IMAGE_CLASSIFIER:
            embedding = np.asarray(data["embedding"]) if data.get("embedding") else None
            self.window.add_image(np.asarray(data["probabilities"]), embedding, data["image_stats"])
        elif self.kind == IMAGE_ANOMALY:
            self.window.add_image_anomaly(data["score"], data["reject"], data["image_stats"])
        else:
            rows, n = data["features"], len(data["scores"])
            for i, (score, alarm) in enumerate(zip(data["scores"], data["alarms"], strict=True)):
                row = np.asarray(rows[i * len(rows) // n]) if rows else np.zeros(0)  # the nearest kept row
                self.window.add_vibration(score, alarm, row)

    def _score_image(self, path: Path) -> dict:
        from core.telemetry import image_stats

        pixels = self.scorer.pixels(path)  # decoded once (as the card says): the model and the statistics
        stats = image_stats(luminance(pixels))
        if self.kind == IMAGE_ANOMALY:
            return self._score_anomaly(path, pixels, stats)
        proba, embedding = self.scorer.run(channels_first(pixels[None]))
        verdict = self.scorer.verdict(str(path), proba[0])
        telemetry = {"probabilities": np.round(proba[0], 6).tolist(), "image_stats": stats,
                     "embedding": np.round(embedding[0], 5).tolist() if embedding is not None else None}  # fmt: skip
        return {"label": verdict.label, "probability": verdict.probability, "reject": verdict.reject,
                "probabilities": dict(zip(self.scorer.classes, np.round(proba[0], 6).tolist(), strict=True)),
                "telemetry": telemetry}  # fmt: skip

    def _score_anomaly(self, path: Path, pixels: np.ndarray, stats: dict[str, float]) -> dict:
        scores, maps = self.scorer.run(channels_first(pixels[None]))
        verdict = self.scorer.verdict(str(path), float(scores[0]), maps[0])
        return {"score": round(verdict.score, 6), "reject": verdict.reject, "threshold": verdict.threshold,
                "hotspot": [round(v, 4) for v in verdict.hotspot],
                "telemetry": {"score": round(verdict.score, 6), "reject": verdict.reject, "image_stats": stats}}  # fmt: skip

    def _score_sensor(self, path: Path) -> dict:
        report = score_file(path, self.scorer, SensorRules(), model_ref=self.cfg.model)
        scored = [r for r in report.rows if r.score is not None]
        alarms = [r for r in scored if r.alarm]
        rows = report.features if report.features is not None else np.zeros((0, 0))
        rows = (
            rows[np.linspace(0, len(rows) - 1, min(len(rows), FEATURE_ROWS_PER_FILE)).astype(int)]
            if len(rows)
            else rows
        )
        telemetry = {"scores": [round(r.score, 6) for r in scored], "alarms": [r.alarm for r in scored],
                     "features": np.round(rows, 5).tolist()}  # fmt: skip
        return {"windows": len(report.rows), "alarms": len(alarms), "flagged": report.counts()["flagged"],
                "alarm": bool(alarms), "explanation": alarms[0].explanation if alarms else "",
                "telemetry": telemetry}  # fmt: skip

    def _result(self, path: Path, sha: str) -> dict:
        try:
            result = self._score_image(path) if self.kind in IMAGE_KINDS else self._score_sensor(path)
        except Exception as err:  # a bad file is reported and skipped: the line keeps running
            result = {"error": f"{type(err).__name__}: {err}"[:500], "telemetry": None}
        return {"type": "result", "file": path.name, "sha256": sha, "time": _now(), "model": self.cfg.model,
                "version": self.version} | result  # fmt: skip

    def process(self, path: Path) -> dict | None:
        """Score one file once: None when the ledger already holds its result (a restart)."""
        records = self.process_batch([path])
        return records[0] if records else None

    def process_batch(self, paths: list[Path]) -> list[dict]:
        """Score the files whose results the ledger lacks; their lines reach the disk together, with one
        flush (a backlog costs one disk sync per batch, not per file)."""
        self.refresh()
        records = []
        for path in paths:
            sha = _sha256(path)
            if (path.name, sha) not in self.ledger.done:
                records.append(self._result(path, sha))
        self.ledger.append_many(records)
        for record in records:
            if record["telemetry"] is not None:
                self._count(record)
        self._maybe_close_window()
        return records

    def _room(self) -> int:
        """Files that still fit the open window: a batch never spans two windows."""
        return max(1, self.cfg.window_items - (self.window.items if self.window is not None else 0))

    def send_samples(self) -> None:
        """Upload the images of each window the server asked for (up to 16, evenly spaced), from
        inbox/done/; a window this agent no longer knows, or whose files are gone, is answered with
        none, so the request closes as unavailable instead of coming back forever."""
        for window_id in list(self.client.sample_requests):
            names = self.ledger.window_files.get(window_id, [])
            done = (
                self.cfg.inbox / "done" if self.cfg.inbox is not None else None
            )  # files given by path: not kept
            found = [done / n for n in names if done is not None and (done / n).is_file()]
            keep = (
                np.linspace(0, len(found) - 1, min(len(found), SAMPLES_PER_WINDOW)).astype(int)
                if found
                else []
            )
            self.client.send_samples(window_id, [found[i] for i in keep], len(names) - len(found))

    # -- windows ------------------------------------------------------------------------------
    def _maybe_close_window(self) -> None:
        full = self.window is not None and self.window.items >= self.cfg.window_items
        old = time.monotonic() - self.window_started >= 60 * self.cfg.window_minutes
        if full or (old and self.window is not None and self.window.items):
            self._close_window()

    def _close_window(self) -> None:
        if self.window is None or not self.window.items:
            return
        window_id = f"{self.instance}-{self.ledger.windows + 1:06d}"
        summary = self.window.summary() | {"window_id": window_id, "model": self.cfg.model, "version": str(self.version),
                                           "started": self.ledger.open_window[0]["time"] if self.ledger.open_window else _now(),
                                           "ended": _now()}  # fmt: skip
        self.outbox.put(summary)
        self.ledger.append({"type": "window", "window_id": window_id, "time": _now()}, sync=True)
        self.window = WindowBuilder(
            self.kind, classes=len(self.window.class_counts), seed=self.ledger.windows
        )
        self.window_started = time.monotonic()

    # -- the loop -----------------------------------------------------------------------------
    def inbox_files(self) -> list[Path]:
        suffixes = IMAGE_SUFFIXES | SENSOR_SUFFIXES
        files = [p for p in self.cfg.inbox.iterdir() if p.is_file() and p.suffix.lower() in suffixes]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def _done(self, path: Path) -> None:
        done = self.cfg.inbox / "done"
        done.mkdir(exist_ok=True)
        os.replace(path, done / path.name)

    def run(self, files: list[Path] | None = None, idle_s: float = 0.5, stop_when_idle: bool = False) -> int:
        """Score `files`, or watch the inbox (until it is empty, with `stop_when_idle`); returns results written."""
        self.refresh(force=True)
        written = 0
        for path in files or []:
            written += self.process(path) is not None
        while self.cfg.inbox is not None:
            batch = pending = self.inbox_files()
            while pending:
                room = self._room()
                chunk, pending = pending[:room], pending[room:]
                written += len(self.process_batch(chunk))
                for path in chunk:  # only after their results are on disk
                    self._done(path)
            self.refresh()
            if not batch:
                if stop_when_idle:
                    break
                time.sleep(idle_s)
        self._close_window()
        if self.client is not None:
            self.outbox.send(self.client)
        return written
