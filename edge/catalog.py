"""Which file each device should run: the champion (or, mid-rollout, the stable version) and its bytes.

The registry is asked at most every `ttl_s` seconds; downloaded artefacts are kept per version
with their sha256 and size, and the signed manifest of a version is computed once. Any kind of
model (image classifier, vibration anomaly model) is served the same way: the manifest carries
its card's summary (core.card), which tells the device how to feed the file.
"""

from __future__ import annotations

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
from edge.devices import Device, DeviceStore
from registry.lifecycle import CHAMPION

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
CANARY, ALL = "canary", "all"


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
        client: mlflow.MlflowClient,
        devices: DeviceStore,
        cache_dir: Path,
        signing_key,
        key_id: str,
        ttl_s: float = 2.0,
    ) -> None:
        self.client, self.devices, self.cache_dir = client, devices, cache_dir
        self.signing_key, self.key_id, self.ttl_s = signing_key, key_id, ttl_s
        self._aliases: dict[str, tuple[float, dict[str, str]]] = {}
        self._artifacts: dict[tuple[str, str], Artifact] = {}
        self._lock = threading.Lock()

    def aliases(self, model: str) -> dict[str, str] | None:
        """{alias: version} for `model`, cached for `ttl_s`; None when the model does not exist."""
        cached = self._aliases.get(model)
        if cached and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        try:
            found = {a: str(v) for a, v in self.client.get_registered_model(model).aliases.items()}
        except MlflowException:
            return None
        self._aliases[model] = (time.monotonic(), found)
        return found

    def assigned_version(self, model: str, device: Device) -> str | None:
        """Canary devices get a new champion at once; the rest once it is rolled out to all."""
        aliases = self.aliases(model)
        champion = (aliases or {}).get(CHAMPION)
        if champion is None:
            return None
        stage = self.devices.rollout_stage(model, champion)
        if stage is None:  # a champion this server has not seen yet: canary first if there are canaries
            stage = CANARY if self.devices.has_group(CANARY) and self.devices.stable_version(model) else ALL
            self.devices.set_rollout(model, champion, stage)
        if stage == ALL or device.group == CANARY:
            return champion
        return self.devices.stable_version(model) or champion

    def servable(self, model: str, version: str, device: Device) -> bool:
        """Any version this server has assigned (or that holds an alias) may be fetched.

        A device that read the manifest just before a rollback still finishes its download of the
        now-retired version (signed and verified, so safe) and moves back on its next pull.
        """
        aliases = self.aliases(model) or {}
        return version in aliases.values() or self.devices.rollout_stage(model, version) is not None

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
                mlflow.artifacts.download_artifacts(f"models:/{model}/{version}", dst_path=str(staging))
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
