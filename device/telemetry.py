"""The device's telemetry outbox: closed windows wait on disk until the edge server has them.

pending/<window id>.json, written atomically; `send` posts them oldest first and deletes each one
the server stored (or already had); a window the server refuses as invalid moves to rejected/ and
is never retried; no answer (offline) or 429 keeps them for the next try. At most `capacity`
windows wait: beyond that the oldest are dropped, and the newest waiting window reports how many.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx


class TelemetryOutbox:
    def __init__(self, folder: Path, capacity: int) -> None:
        self.pending, self.rejected, self.capacity = folder / "pending", folder / "rejected", capacity
        self.pending.mkdir(parents=True, exist_ok=True)

    def _write(self, window: dict) -> None:
        staging = self.pending / f".{window['window_id']}.tmp"
        staging.write_text(json.dumps(window))
        os.replace(staging, self.pending / f"{window['window_id']}.json")

    def put(self, window: dict) -> None:
        """Keep a closed window for sending. When the buffer is full the oldest go, and the newest
        waiting window carries how many, so the server learns of the gap."""
        self._write(window | {"dropped_windows": window.get("dropped_windows", 0)})
        waiting = self.waiting()
        excess = waiting[: max(0, len(waiting) - self.capacity)]
        for old in excess:
            old.unlink()
        if excess:
            newest = json.loads(waiting[-1].read_text())
            self._write(newest | {"dropped_windows": newest["dropped_windows"] + len(excess)})

    def waiting(self) -> list[Path]:
        return sorted(self.pending.glob("*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name))

    def send(self, client) -> int:
        """Post what waits; returns how many the server now has. Stops at the first failure to reach it."""
        sent = 0
        for path in self.waiting():
            try:
                response = client.http.post(f"{client.server}/v1/devices/telemetry", content=path.read_bytes(),
                                            headers={"content-type": "application/json"})  # fmt: skip
            except httpx.TransportError:
                return sent  # offline: try again at the next check
            if response.status_code == 200:
                path.unlink()
                sent += 1
            elif response.status_code in (400, 403, 409, 413, 422):
                self.rejected.mkdir(exist_ok=True)
                os.replace(path, self.rejected / path.name)
            else:  # 401, 429, 5xx: the server cannot take it now
                return sent
        return sent
