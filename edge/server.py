"""`shopfloor edge serve`: the HTTP service devices pull approved models from.

  GET  /v1/models/{name}/manifest   signed manifest of the version this device should run
  GET  /v1/models/{name}/artifact   the ONNX bytes (ETag = sha256, If-None-Match, Range)
  POST /v1/devices/heartbeat        the device reports the version it runs

Every request needs `Authorization: Bearer <device token>`. Unknown models, bad names and
foreign versions get a plain 4xx with a short reason and nothing about the server's files.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import mlflow
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel

from core.settings import DEFAULT_EDGE_STATE, DEFAULT_TRACKING_URI
from core.signing import key_id, load_or_create_key, public_pem
from edge.catalog import MODEL_NAME, Catalog
from edge.devices import Device, DeviceStore


@dataclass(frozen=True)
class EdgeSettings:
    state_dir: Path = DEFAULT_EDGE_STATE  # keys, device database, artefact cache
    tracking_uri: str = DEFAULT_TRACKING_URI
    alias_ttl_s: float = 2.0

    @property
    def key_path(self) -> Path:
        return self.state_dir / "keys" / "signing_key.pem"

    @property
    def public_key_path(self) -> Path:
        return self.state_dir / "keys" / "public_key.pem"

    @property
    def devices_path(self) -> Path:
        return self.state_dir / "devices.db"


class Heartbeat(BaseModel):
    model: str
    version: str | None = None
    status: str = "ok"


def open_catalog(settings: EdgeSettings) -> tuple[Catalog, DeviceStore]:
    """The signing key (created on first use, public half written beside it), devices and catalog."""
    key = load_or_create_key(settings.key_path)
    public = public_pem(key)
    settings.public_key_path.write_bytes(public)
    devices = DeviceStore(settings.devices_path)
    client = mlflow.MlflowClient(settings.tracking_uri)
    return Catalog(client, devices, settings.state_dir / "cache", key, key_id(public), settings.alias_ttl_s), devices


def create_app(settings: EdgeSettings) -> FastAPI:
    catalog, devices = open_catalog(settings)
    app = FastAPI(title="shopfloor edge", docs_url=None, redoc_url=None, openapi_url=None)

    def device(authorization: str | None = Header(default=None)) -> Device:
        if not authorization or not authorization.startswith("Bearer "):
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        found = devices.authenticate(authorization.removeprefix("Bearer ").strip())
        if found is None:
            raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
        return found

    Authorized = Annotated[Device, Depends(device)]

    def checked_name(name: str) -> str:
        if not MODEL_NAME.fullmatch(name):
            raise HTTPException(404, "no such model")
        return name

    @app.get("/v1/models/{name}/manifest")
    def manifest(name: str, who: Authorized) -> JSONResponse:
        version = catalog.assigned_version(checked_name(name), who)
        if version is None:
            raise HTTPException(404, "no such model, or no approved version yet")
        devices.seen(who.name, model=name)
        return JSONResponse(catalog.artifact(name, version).manifest)

    @app.get("/v1/models/{name}/artifact")
    def artifact(name: str, request: Request, who: Authorized, version: str | None = None) -> Response:
        name = checked_name(name)
        version = version or catalog.assigned_version(name, who)
        if version is None or not version.isdigit() or not catalog.servable(name, version, who):
            raise HTTPException(404, "no such model version for this device")
        item = catalog.artifact(name, version)
        etag = f'"{item.sha256}"'
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers={"etag": etag})
        return FileResponse(
            item.path,
            media_type="application/octet-stream",
            headers={"etag": etag, "x-model-version": version},
        )

    @app.post("/v1/devices/heartbeat")
    def heartbeat(beat: Heartbeat, who: Authorized) -> dict:
        devices.seen(who.name, checked_name(beat.model), beat.version, beat.status[:200])
        return {"ok": True}

    return app
