"""Which file each device should run: the approved champion (or, mid-rollout, the stable version) and its bytes.

The registry is asked at most every `ttl_s` seconds; downloaded artefacts are kept per version
with their sha256 and size, and the signed manifest of a version is computed once. Any kind of
model (image classifier, vibration anomaly model) is served the same way: the manifest carries
its card's summary (core.card), which tells the device how to feed the file.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from core.card import read_card, summary
from core.signing import file_sha256, sign
from edge.devices import ALL, CANARY, Device, DeviceStore
from registry.lifecycle import CHAMPION, AliasEvent, approval_of, record_event

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
log = logging.getLogger("shopfloor.edge")


@dataclass(frozen=True)
class Artifact:
    model: str
    version: str
    path: Path
    sha256: str
    size: int
    manifest: dict  # signed


class Catalog:
    def __init__(
        self,
        tracking_uri: str,
        devices: DeviceStore,
        cache_dir: Path,
        signing_key,
        key_id: str,
        ttl_s: float = 2.0,
    ) -> None:
        self.tracking_uri, self.devices, self.cache_dir = tracking_uri, devices, cache_dir
        self.client = mlflow.MlflowClient(tracking_uri)
        self.signing_key, self.key_id, self.ttl_s = signing_key, key_id, ttl_s
        self._aliases: dict[str, tuple[float, dict[str, str]]] = {}
        self._approved: dict[tuple[str, str], tuple[float, bool]] = {}
        self._artifacts: dict[tuple[str, str], Artifact] = {}
        self._lock = threading.Lock()
        # one registry look-up at a time: when the cache expires under load, one request asks MLflow
        # and the others answer from the value it replaces (at most one look-up old), not all at once
        self._refreshing = threading.Lock()

    def aliases(self, model: str) -> dict[str, str] | None:
        """{alias: version} for `model`, cached for `ttl_s`; None when the model does not exist."""
        cached = self._aliases.get(model)
        if cached and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        if not self._refreshing.acquire(blocking=cached is None):
            return cached[1]  # another request is asking the registry right now: a moment-old answer
        try:
            found = {a: str(v) for a, v in self.client.get_registered_model(model).aliases.items()}
        except MlflowException:
            return None
        finally:
            self._refreshing.release()
        self._aliases[model] = (time.monotonic(), found)
        return found

    def approved(self, model: str, version: str) -> bool:
        """Whether `version` has an approval record (registry.lifecycle.approval_of), cached for `ttl_s`."""
        key = (model, version)
        cached = self._approved.get(key)
        if cached and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        if not self._refreshing.acquire(blocking=cached is None):
            return cached[1]
        try:
            found = approval_of(self.client.get_model_version(model, version).tags) is not None
        except MlflowException:
            found = False
        finally:
            self._refreshing.release()
        self._approved[key] = (time.monotonic(), found)
        return found

    def champion(self, model: str) -> str | None:
        """The champion when it is approved. An alias moved outside shopfloor to a version without an
        approval record is refused (recorded once, see `refuse`) and the last approved version this
        server rolled out stays in service; None when there is none."""
        champion = (self.aliases(model) or {}).get(CHAMPION)
        if champion is None or self.approved(model, champion):
            return champion
        self.refuse(model, champion)
        fallback = self.devices.latest_rollout(model)
        return fallback if fallback and fallback != champion and self.approved(model, fallback) else None

    def refuse(self, model: str, version: str) -> None:
        """Log the refusal, keep it in the device database (`edge status`) and, the first time, in the
        registry's history (`registry history`)."""
        reason = "the champion alias points to a version without a passing gate or an approval record"
        if self.devices.refuse(model, version, reason):
            log.warning("refusing to serve %s v%s: %s; run `shopfloor registry approve %s %s` to accept it",
                        model, version, reason, model, version)  # fmt: skip
            event = AliasEvent(int(time.time() * 1000), model, CHAMPION, self.devices.latest_rollout(model), version,
                               "edge-server", "edge-refused", {"passed": False, "reason": reason})  # fmt: skip
            record_event(self.client, event)

    def assigned_version(self, model: str, device: Device) -> str | None:
        """Canary devices (the group, and the version's own: a drifted device it was retrained for) get a new
        approved champion at once; the rest once it is rolled out to all."""
        champion = self.champion(model)
        if champion is None:
            return None
        stage = self.devices.rollout_stage(model, champion)
        canaries = self.devices.canaries(model, champion)
        if stage is None:  # a champion this server has not seen yet: canary first if there are canaries
            first = self.devices.has_group(CANARY) or canaries
            stage = CANARY if first and self.devices.stable_version(model) else ALL
            self.devices.set_rollout(model, champion, stage)
        if stage == ALL or device.group == CANARY or device.name in canaries:
            return champion
        return self.devices.stable_version(model) or champion

    def servable(self, model: str, version: str, device: Device) -> bool:
        """Only the version this device was assigned: the current assignment, or the one its last
        manifest named (a device that read the manifest just before a rollback still finishes that
        download, signed and verified, and moves back on its next pull). Approved either way."""
        told = self.devices.assignment(device.name, model)
        allowed = {self.assigned_version(model, device), told.assigned_version if told else None}
        return version in allowed and self.approved(model, version)

    def artifact(self, model: str, version: str) -> Artifact:
        key = (model, version)
        if key in self._artifacts:
            return self._artifacts[key]
        with self._lock:
            if key not in self._artifacts:
                self._artifacts[key] = self._fetch(model, version)
        return self._artifacts[key]

    def _fetch(self, model: str, version: str) -> Artifact:
        target = self.cache_dir / model / version
        path = target / "model.onnx"
        if not path.exists():
            staging = target.with_name(f".{version}.partial")
            shutil.rmtree(staging, ignore_errors=True)
            local = Path(
                mlflow.artifacts.download_artifacts(
                    f"models:/{model}/{version}",
                    dst_path=str(staging),
                    tracking_uri=self.tracking_uri,
                    registry_uri=self.tracking_uri,
                )  # fmt: skip
            )
            target.mkdir(parents=True, exist_ok=True)
            shutil.move(str(next(local.rglob("*.onnx"))), path)
            shutil.rmtree(staging, ignore_errors=True)
        created = self.client.get_model_version(model, version).creation_timestamp
        payload = {
            "model": model, "version": version, "sha256": file_sha256(path), "size": path.stat().st_size,
            "created": datetime.fromtimestamp(created / 1000, UTC).isoformat(), "key_id": self.key_id,
            "card": summary(read_card(path)),
        }  # fmt: skip
        return Artifact(
            model, version, path, payload["sha256"], payload["size"], sign(self.signing_key, payload)
        )
