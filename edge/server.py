"""`shopfloor edge serve`: the HTTP service devices pull approved models from.

  GET|HEAD /v1/models/{name}/manifest   signed manifest of the version this device should run
  GET|HEAD /v1/models/{name}/artifact   the ONNX bytes (ETag = sha256, If-None-Match incl. *, Range)
  POST     /v1/devices/heartbeat        the device reports the version it runs
  POST     /v1/devices/telemetry        one window of what it saw (edge.telemetry), stored once
  PUT      /v1/devices/samples/{window}/{index}   one image of a window someone asked for (edge.samples)
  POST     /v1/devices/samples/{window}           the device has sent them all (or has none)

Heartbeat answers list the windows whose images are wanted from this device.

Every request needs `Authorization: Bearer <device token>`. Before any of that, the guard
(edge.guard) refuses a body above `max_body_bytes` without reading it and limits requests per
address and per token. Unknown models, bad names and foreign versions get a plain 4xx with a short
reason and nothing about the server's files; error bodies never echo the request.

(No `from __future__ import annotations` here: FastAPI must evaluate the route annotations, which
name the local `Authorized` dependency.)
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from core.settings import DEFAULT_EDGE_STATE, DEFAULT_TRACKING_URI
from core.signing import key_id, load_or_create_key, public_pem
from edge.catalog import MODEL_NAME, Catalog
from edge.devices import GROUPS, Device, DeviceStore
from edge.guard import Guard, RateLimits
from edge.samples import MAX_FILE_BYTES, MAX_FILES, SampleError, SampleStore
from edge.telemetry import TelemetryStore, TelemetryWindow
from registry.store import follow_moves


@dataclass(frozen=True)
class EdgeSettings:
    state_dir: Path = DEFAULT_EDGE_STATE  # keys, device database, artefact cache
    tracking_uri: str = DEFAULT_TRACKING_URI
    alias_ttl_s: float = 2.0
    max_body_bytes: int = 64 * 1024  # a telemetry window is ~20 KB at its limits, a heartbeat ~100 bytes
    limits: RateLimits = RateLimits()
    groups: tuple[str, ...] = GROUPS

    @property
    def key_path(self) -> Path:
        return self.state_dir / "keys" / "signing_key.pem"

    @property
    def public_key_path(self) -> Path:
        return self.state_dir / "keys" / "public_key.pem"

    @property
    def devices_path(self) -> Path:
        return self.state_dir / "devices.db"

    @property
    def telemetry_path(self) -> Path:
        return self.state_dir / "telemetry.db"

    @property
    def samples_dir(self) -> Path:
        return self.state_dir / "samples"


class SamplesSent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    files: int = Field(ge=0, le=MAX_FILES)
    missing: int = Field(0, ge=0, le=1_000_000)


class Heartbeat(BaseModel):
    """What a device may report: short, plain fields (no free text beyond `status`'s 200 characters)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(pattern=MODEL_NAME.pattern, max_length=100)
    version: str | None = Field(None, pattern=r"^\d{1,12}$")
    status: str = Field("ok", max_length=200, pattern=r"^[\x20-\x7e]*$")


def open_catalog(settings: EdgeSettings) -> tuple[Catalog, DeviceStore]:
    """The signing key (created on first use, public half written beside it), devices and catalog."""
    key = load_or_create_key(settings.key_path)
    public = public_pem(key)
    settings.public_key_path.write_bytes(public)
    devices = DeviceStore(settings.devices_path, settings.groups)
    follow_moves(settings.tracking_uri)
    cache = settings.state_dir / "cache"
    return Catalog(settings.tracking_uri, devices, cache, key, key_id(public), settings.alias_ttl_s), devices


def _plain_errors(app: FastAPI) -> None:
    """Error bodies say what was wrong, never echo the request back, never show a traceback."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        where = ["/".join(str(p) for p in e.get("loc", ())[1:]) or "body" for e in err.errors()][:5]
        return JSONResponse({"detail": f"invalid request: check {', '.join(where)}"}, status_code=422)


def _etag_matches(request: Request, etag: str) -> bool:
    wanted = [t.strip() for t in request.headers.get("if-none-match", "").split(",")]
    return "*" in wanted or etag in wanted


def _report_routes(app: FastAPI, windows: TelemetryStore, samples: SampleStore, Authorized) -> None:
    """What devices send back: telemetry windows, and the images of windows someone asked for (edge.samples).
    `Authorized` is create_app's dependency type."""

    @app.post("/v1/devices/telemetry")
    def telemetry(window: TelemetryWindow, who: Authorized) -> dict:
        if window.device is not None and window.device != who.name:
            raise HTTPException(403, "a device reports its own windows only")
        try:
            return {"status": windows.add(who.name, window)}
        except ValueError:
            raise HTTPException(409, "this window id was already used for another window") from None

    @app.put("/v1/devices/samples/{window_id}/{index}")
    async def sample(window_id: str, index: int, request: Request, who: Authorized,
                     x_file_name: str = Header(max_length=100)) -> dict:  # fmt: skip
        try:
            body = await request.body()  # already bounded by the guard (MAX_FILE_BYTES)
            return {
                "status": await run_in_threadpool(samples.put, who.name, window_id, index, x_file_name, body)
            }
        except SampleError as err:
            raise HTTPException(err.status, str(err)) from None

    @app.post("/v1/devices/samples/{window_id}")
    def samples_sent(window_id: str, sent: SamplesSent, who: Authorized) -> dict:
        try:
            return {"state": samples.close(who.name, window_id, sent.files, sent.missing).state}
        except SampleError as err:
            raise HTTPException(err.status, str(err)) from None


def create_app(settings: EdgeSettings) -> FastAPI:
    catalog, devices = open_catalog(settings)
    windows = TelemetryStore(settings.telemetry_path)
    samples = SampleStore(settings.samples_dir)
    app = FastAPI(title="shopfloor edge", docs_url=None, redoc_url=None, openapi_url=None)
    _plain_errors(app)

    def device(authorization: str | None = Header(default=None)) -> Device:
        if not authorization or not authorization.startswith("Bearer "):
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        found = devices.authenticate(authorization.removeprefix("Bearer ").strip()[:200])
        if found is None:
            raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
        return found

    Authorized = Annotated[Device, Depends(device)]

    def assigned(name: str, who: Device) -> str:
        version = catalog.assigned_version(name, who) if MODEL_NAME.fullmatch(name) else None
        if version is None:
            raise HTTPException(404, "no such model, or no approved version yet")
        return version

    @app.api_route("/v1/models/{name}/manifest", methods=["GET", "HEAD"])
    def manifest(name: str, who: Authorized) -> JSONResponse:
        version = assigned(name, who)
        devices.assigned(who.name, name, version)
        return JSONResponse(catalog.artifact(name, version).manifest)

    @app.api_route("/v1/models/{name}/artifact", methods=["GET", "HEAD"])
    def artifact(name: str, request: Request, who: Authorized, version: str | None = None) -> Response:
        version = version or assigned(name, who)
        if len(version) > 12 or not version.isdigit() or not catalog.servable(name, version, who):
            raise HTTPException(404, "no such model version for this device")
        item = catalog.artifact(name, version)
        etag = f'"{item.sha256}"'
        if _etag_matches(request, etag):
            return Response(status_code=304, headers={"etag": etag})
        headers = {"etag": etag, "x-model-version": version}
        return FileResponse(item.path, media_type="application/octet-stream", headers=headers)

    @app.post("/v1/devices/heartbeat")
    def heartbeat(beat: Heartbeat, who: Authorized) -> dict:
        devices.reported(who.name, beat.model, beat.version, beat.status)
        return {"ok": True, "samples": samples.pending(who.name)}

    _report_routes(app, windows, samples, Authorized)
    larger = {"/v1/devices/samples/": MAX_FILE_BYTES}
    return Guard(app, settings.max_body_bytes, settings.limits, larger)
