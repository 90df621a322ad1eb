"""`shopfloor edge pull`: the device side. Verify, then install atomically; never break a working model.

Layout under the device's model folder:
  versions/<v>/model.onnx + manifest.json    every verified version kept
  current -> versions/<v>                     symlink, switched with one atomic rename
  previous -> versions/<old>                  what `rollback` goes back to
  downloads/<model>-<v>.partial               an interrupted download, resumed with Range

Order of trust: the manifest's Ed25519 signature (with the key from enrolment) vouches for the
sha256 and size; the downloaded bytes must match both before anything is switched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from core.errors import ShopfloorError
from core.signing import file_sha256, verify


class PullError(ShopfloorError):
    """A pull failed; the model that was running keeps running."""


@dataclass(frozen=True)
class PullResult:
    model: str
    version: str
    changed: bool
    path: Path


class EdgeClient:
    def __init__(
        self,
        server: str,
        token: str,
        public_key_pem: bytes,
        root: Path,
        timeout_s: float = 30.0,
        retries: int = 3,
    ) -> None:
        self.server, self.public_key_pem, self.root, self.retries = (
            server.rstrip("/"),
            public_key_pem,
            root,
            retries,
        )
        self.http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s)
        self.sample_requests: list[str] = []  # windows whose images the server asked for

    def close(self) -> None:
        self.http.close()

    # -- what is installed -------------------------------------------------------------------
    def model_dir(self, model: str) -> Path:
        return self.root / model

    def current(self, model: str) -> dict | None:
        manifest = self.model_dir(model) / "current" / "manifest.json"
        return json.loads(manifest.read_text()) if manifest.exists() else None

    def current_model_path(self, model: str) -> Path:
        return installed_model(self.root, model)

    # -- pulling -----------------------------------------------------------------------------
    def manifest(self, model: str) -> dict:
        response = self._get(f"/v1/models/{model}/manifest")
        return verify(self.public_key_pem, response.json())

    def pull(self, model: str) -> PullResult:
        """Install the version the server assigns, if it differs from the running one."""
        wanted = self.manifest(model)
        running = self.current(model)
        if running and running["sha256"] == wanted["sha256"]:
            self.heartbeat(model, running["version"])
            return PullResult(model, running["version"], False, self.current_model_path(model))
        downloaded = self._download(model, wanted)
        path = self._install(model, wanted, downloaded)
        self.heartbeat(model, wanted["version"])
        return PullResult(model, wanted["version"], True, path)

    def _download(self, model: str, manifest: dict) -> Path:
        partial = self.model_dir(model) / "downloads" / f"{model}-{manifest['version']}.partial"
        partial.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(self.retries + 1):
            try:
                self._fetch_into(partial, model, manifest)
                break
            except (httpx.TransportError, httpx.RemoteProtocolError) as err:
                if attempt == self.retries:
                    raise PullError(
                        f"download of {model} v{manifest['version']} failed {attempt + 1} times ({err}); keeping the running model"
                    ) from err
                time.sleep(0.2 * (attempt + 1))
        size, digest = partial.stat().st_size, file_sha256(partial)
        if size != manifest["size"] or digest != manifest["sha256"]:
            partial.unlink()
            raise PullError(
                f"{model} v{manifest['version']}: downloaded {size} bytes with sha256 {digest[:12]}..., the signed manifest says "
                f"{manifest['size']} bytes, {manifest['sha256'][:12]}...; discarded, keeping the running model"
            )
        return partial

    def _fetch_into(self, partial: Path, model: str, manifest: dict) -> None:
        have = partial.stat().st_size if partial.exists() else 0
        if have >= manifest["size"]:
            return
        headers = {"Range": f"bytes={have}-", "If-Range": f'"{manifest["sha256"]}"'} if have else {}
        url = f"{self.server}/v1/models/{model}/artifact"
        with self.http.stream(
            "GET", url, params={"version": manifest["version"]}, headers=headers
        ) as response:
            if response.status_code not in (200, 206):
                raise PullError(
                    f"artifact request for {model} v{manifest['version']} answered {response.status_code}: {response.read()[:200]!r}"
                )
            mode = "ab" if response.status_code == 206 else "wb"  # 200: the server sent the whole file again
            with partial.open(mode) as handle:
                for chunk in response.iter_bytes(1 << 16):
                    handle.write(chunk)

    def _install(self, model: str, manifest: dict, downloaded: Path) -> Path:
        base = self.model_dir(model)
        target = base / "versions" / manifest["version"]
        target.mkdir(parents=True, exist_ok=True)
        os.replace(downloaded, target / "model.onnx")
        (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
        old = os.readlink(base / "current") if (base / "current").is_symlink() else None
        _switch(base / "current", Path("versions") / manifest["version"])
        if old and Path(old).name != manifest["version"]:
            _switch(base / "previous", Path(old))
        return target / "model.onnx"

    def rollback(self, model: str) -> str:
        """Run the previously installed version again (offline; no server needed)."""
        base = self.model_dir(model)
        if not (base / "previous").is_symlink():
            raise PullError(f"no previous version of {model} is installed")
        old, current = os.readlink(base / "previous"), os.readlink(base / "current")
        _switch(base / "current", Path(old))
        _switch(base / "previous", Path(current))
        return Path(old).name

    def heartbeat(self, model: str, version: str | None, status: str = "ok") -> None:
        """Report what runs; the answer lists windows whose images someone asked for (kept in
        `sample_requests` until they are sent)."""
        with contextlib.suppress(httpx.TransportError, ValueError):  # a missed heartbeat never stops a device
            response = self.http.post(
                f"{self.server}/v1/devices/heartbeat",
                json={"model": model, "version": version, "status": status},
            )
            if response.status_code == 200:
                self.sample_requests = [str(w) for w in response.json().get("samples", [])][:16]

    def send_samples(self, window_id: str, paths: list[Path], missing: int) -> bool:
        """Upload a requested window's images (index = position) and close the request; False when the
        server could not be reached or refused (the request stays open and comes back next heartbeat)."""
        try:
            for index, path in enumerate(paths):
                response = self.http.put(f"{self.server}/v1/devices/samples/{window_id}/{index}",
                                         content=path.read_bytes(), headers={"x-file-name": path.name})  # fmt: skip
                if response.status_code != 200:
                    return False
            response = self.http.post(f"{self.server}/v1/devices/samples/{window_id}",
                                      json={"files": len(paths), "missing": missing})  # fmt: skip
        except (httpx.TransportError, OSError):
            return False
        if response.status_code == 200:
            self.sample_requests = [w for w in self.sample_requests if w != window_id]
        return response.status_code == 200

    def _get(self, path: str) -> httpx.Response:
        try:
            response = self.http.get(f"{self.server}{path}")
        except httpx.TransportError as err:
            raise PullError(f"cannot reach {self.server}: {err}") from err
        if response.status_code != 200:
            detail = (
                response.json().get("detail")
                if response.headers.get("content-type", "").startswith("application/json")
                else response.text
            )
            raise PullError(f"{self.server}{path} answered {response.status_code}: {detail}")
        return response


def _switch(link: Path, target: Path) -> None:
    """Point `link` at `target` with one atomic rename (readers see old or new, never neither)."""
    temporary = link.with_name(link.name + ".switch")
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    temporary.symlink_to(target)
    os.replace(temporary, link)


def installed_model(root: Path, model: str) -> Path:
    """The ONNX file of the version a device runs now; PullError when nothing is installed."""
    path = root / model / "current" / "model.onnx"
    if not path.exists():
        raise PullError(f"no model {model!r} installed under {root}; run `shopfloor edge pull {model}` first")
    return path


def remove_model(root: Path, model: str) -> None:
    shutil.rmtree(root / model, ignore_errors=True)
