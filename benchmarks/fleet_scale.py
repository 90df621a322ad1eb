"""The edge server holding a fleet: 1000 devices polling the manifest every 30 s and sending a
telemetry window every 5 minutes, at their real rates, on loopback.

  python -m benchmarks.fleet_scale --onnx MODEL.int8.onnx [--devices 1000] [--seconds 120] [--label now]

`shopfloor edge serve` runs in its own process group with its default settings (the per-address
rate limit raised: every simulated device shares 127.0.0.1). One asyncio load generator plays the
devices: each starts at a random point of its period, then polls every 30 s (+-1 s jitter); each
sends windows of 64 images (probabilities, image statistics, 64 16-dimensional embeddings: ~14 kB of
JSON) every 300 s from a random start. Bounded in devices and time. Latency is measured from send
to the whole response. Also profiles one manifest request's parts in this process (the same code
the server runs). Appends its figures under `--label` to benchmarks/results/fleet_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.edge_load import prepare_store
from flows.processes import free_port, start_child, stop_child

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "fleet_scale.json"
MODEL = "defect-classifier"


def telemetry_body(device: int, n: int, version: str, rng: np.random.Generator) -> dict:
    from core.telemetry import WindowBuilder

    builder = WindowBuilder("image-classifier", classes=6, seed=device)
    for _ in range(64):
        proba = rng.dirichlet(np.ones(6))
        stats = {"brightness": 100 + rng.normal(), "contrast": 30.0, "blur": 50.0, "clipped": 0.01}
        builder.add_image(proba, rng.normal(size=16), stats)
    return builder.summary() | {"window_id": f"d{device}-{n}", "model": MODEL, "version": version,
                                "started": "2026-12-02T10:00:00", "ended": "2026-12-02T10:05:00"}  # fmt: skip


async def play_fleet(
    url: str, tokens: list[str], seconds: float, version: str, poll_s: float = 30.0, window_s: float = 300.0
) -> dict:
    rng = np.random.default_rng(0)
    bodies = [telemetry_body(i, 0, version, rng) for i in range(20)]  # content varies little; ids are unique
    latencies: dict[str, list[float]] = {"manifest": [], "telemetry": []}
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def call(http: httpx.AsyncClient, kind: str, method: str, path: str, token: str, body=None) -> None:
        started = time.perf_counter()
        try:
            response = await http.request(
                method, f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            ok = response.status_code == 200
            key = None if ok else str(response.status_code)
        except httpx.HTTPError as err:
            key = type(err).__name__
        latencies[kind].append(time.perf_counter() - started)
        if key:
            errors[f"{kind} {key}"] = errors.get(f"{kind} {key}", 0) + 1

    async def device(http: httpx.AsyncClient, i: int, token: str) -> None:
        rnd = random.Random(i)
        next_poll = time.perf_counter() + rnd.uniform(0, poll_s)
        next_window, sent = time.perf_counter() + rnd.uniform(0, window_s), 0
        while True:
            wake = min(next_poll, next_window)
            if wake >= deadline:
                return
            await asyncio.sleep(max(0.0, wake - time.perf_counter()))
            if wake == next_poll:
                await call(http, "manifest", "GET", f"/v1/models/{MODEL}/manifest", token)
                next_poll += poll_s * (1 + rnd.uniform(-0.03, 0.03))
            else:
                body = bodies[i % len(bodies)] | {"window_id": f"d{i}-{sent}"}
                await call(http, "telemetry", "POST", "/v1/devices/telemetry", token, body)
                next_window, sent = next_window + window_s, sent + 1

    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        await asyncio.gather(*(device(http, i, t) for i, t in enumerate(tokens)))

    def summary(values: list[float]) -> dict:
        ms = np.array(values) * 1000
        if not len(ms):
            return {"requests": 0}
        return {"requests": len(ms), "per_s": round(len(ms) / seconds, 1), "p50_ms": round(float(np.median(ms)), 1),
                "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1)}  # fmt: skip

    return {kind: summary(v) for kind, v in latencies.items()} | {"errors": errors}


def profile_manifest(root: Path, uri: str, tokens: list[str], repeats: int = 300) -> dict:
    """Milliseconds per part of one manifest request, in this process, on the benchmark's stores."""
    from core.signing import key_id, load_or_create_key, public_pem
    from edge.catalog import Catalog
    from edge.devices import DeviceStore

    devices = DeviceStore(root / "profile-devices.db")
    names = [f"p-{i:03d}" for i in range(repeats)]
    profile_tokens = [devices.enroll(n) for n in names]
    key = load_or_create_key(root / "edge" / "keys" / "signing_key.pem")
    catalog = Catalog(uri, devices, root / "profile-cache", key, key_id(public_pem(key)))
    parts = {"authenticate": [], "assigned_version": [], "record_assignment": [], "signed_manifest": []}
    for token in profile_tokens:
        t0 = time.perf_counter()
        who = devices.authenticate(token)
        t1 = time.perf_counter()
        version = catalog.assigned_version(MODEL, who)
        t2 = time.perf_counter()
        devices.assigned(who.name, MODEL, version)
        t3 = time.perf_counter()
        json.dumps(catalog.artifact(MODEL, version).manifest)
        t4 = time.perf_counter()
        for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            parts[name].append(dt * 1000)
    repeats_ms = []
    for token in profile_tokens:  # the same devices polling again for the same version: no disk write
        who = devices.authenticate(token)
        t0 = time.perf_counter()
        devices.assigned(who.name, MODEL, version)
        repeats_ms.append((time.perf_counter() - t0) * 1000)
    parts["record_assignment_repeat_poll"] = repeats_ms
    misses = []
    for token in profile_tokens[:50]:  # every `alias_ttl_s` one request finds the registry cache expired
        catalog._aliases.clear(), catalog._approved.clear()
        who = devices.authenticate(token)
        t0 = time.perf_counter()
        catalog.assigned_version(MODEL, who)
        misses.append((time.perf_counter() - t0) * 1000)
    parts["assigned_version_cache_miss"] = misses
    return {name: {"median_ms": round(float(np.median(v)), 3), "p99_ms": round(float(np.percentile(v, 99)), 3)}
            for name, v in parts.items()}  # fmt: skip


def main() -> None:
    from core.settings import apply_offline_defaults

    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--label", default="now")
    parser.add_argument("--poll-s", type=float, default=30.0, help="manifest period per device")
    parser.add_argument("--window-s", type=float, default=300.0, help="telemetry period per device")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        uri, tokens, _ = prepare_store(root, args.onnx, args.devices)
        port = free_port()
        server = start_child([sys.executable, "-m", "flows.cli.main", "edge", "serve", "--port", str(port), "--state",
                              str(root / "edge"), "--tracking-uri", uri, "--rate-per-address", "100000"],
                             os.environ | {"PYTHONUNBUFFERED": "1"})  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    httpx.get(f"{url}/v1/models/x/manifest", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            fleet = asyncio.run(play_fleet(url, tokens, args.seconds, "1", args.poll_s, args.window_s))
        finally:
            stop_child(server)
        profile = profile_manifest(root, uri, tokens)
    result = {"devices": args.devices, "seconds": args.seconds, "poll_s": args.poll_s, "window_s": args.window_s, "cpu_cores": os.cpu_count(), "fleet": fleet,
              "manifest_profile": profile}  # fmt: skip
    print(json.dumps(result, indent=2))
    everything = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps(everything | {args.label: result}, indent=2) + "\n")


if __name__ == "__main__":
    main()
