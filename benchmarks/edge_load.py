"""Edge server under load on loopback: 100 simulated devices pull manifest + artifact at once.

  python -m benchmarks.edge_load [--onnx PATH] [--devices 100] [--seconds 10]

Registers an exported int8 model as champion in a temporary MLflow store, enrols the devices,
starts `shopfloor edge serve` in its own process, then (1) every device pulls manifest and
artifact concurrently and verifies signature, size and sha256 with the real device client; (2)
all devices hammer the manifest endpoint for `--seconds` to measure requests/s and latency.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from core.settings import apply_offline_defaults


def latest_export() -> Path:
    found = sorted(Path("artifacts").glob("**/export/model.int8.onnx"), key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit("no exported model found under artifacts/; run `make demo` first or pass --onnx")
    return found[-1]


def prepare_store(root: Path, onnx_path: Path, devices: int) -> tuple[str, list[str], bytes]:
    import mlflow
    import onnx
    from mlflow.models import infer_signature

    from core.card import read_card
    from core.signing import load_or_create_key, public_pem
    from edge.devices import DeviceStore
    from registry.lifecycle import promote, record_approval
    from registry.tracking import TrackingConfig, configure

    uri = f"sqlite:///{root}/mlflow.db"
    client = configure(
        TrackingConfig(tracking_uri=uri, experiment="edge-bench", model_name="defect-classifier")
    )
    size = read_card(onnx_path)["input"]["preprocessing"]["image_size"]
    example = np.zeros((1, 1, size, size), np.float32)
    with mlflow.start_run():
        info = mlflow.onnx.log_model(
            onnx.load(str(onnx_path)),
            name="edge-int8",
            signature=infer_signature(example),
            pip_requirements=["onnxruntime"],
            save_as_external_data=False,  # one self-contained file, as the flow logs it
        )
    version = str(mlflow.register_model(info.model_uri, "defect-classifier").version)
    record_approval(client, "defect-classifier", version, "user:benchmark", "override", "benchmark: no gate")
    promote(client, "defect-classifier", version, "user:benchmark", None)
    key = load_or_create_key(root / "edge" / "keys" / "signing_key.pem")
    store = DeviceStore(root / "edge" / "devices.db")
    tokens = [store.enroll(f"press-{i:03d}") for i in range(devices)]
    return uri, tokens, public_pem(key)


def pull_all(url: str, tokens: list[str], public: bytes, root: Path) -> dict:
    from device.client import EdgeClient

    def one(i_token):
        i, token = i_token
        client = EdgeClient(url, token, public, root / "devices" / f"d{i}")
        started = time.perf_counter()
        try:
            result = client.pull("defect-classifier")
            data = result.path.read_bytes()
            ok = hashlib.sha256(data).hexdigest() == client.current("defect-classifier")["sha256"]
            return ok, time.perf_counter() - started, None
        except Exception as err:  # counted and reported, never hidden
            return False, time.perf_counter() - started, repr(err)
        finally:
            client.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(len(tokens)) as pool:
        results = list(pool.map(one, enumerate(tokens)))
    wall = time.perf_counter() - started
    errors = [r[2] for r in results if not r[0]]
    return {"devices": len(tokens), "verified": sum(r[0] for r in results), "errors": len(errors), "first_error": errors[0] if errors else None,
            "wall_s": wall, "pull_p50_s": float(np.median([r[1] for r in results])), "pull_p99_s": float(np.percentile([r[1] for r in results], 99))}  # fmt: skip


async def hammer_manifest(url: str, tokens: list[str], seconds: float) -> dict:
    latencies, failures = [], 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=len(tokens))
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:

        async def device(token: str) -> None:
            nonlocal failures
            headers = {"Authorization": f"Bearer {token}"}
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await http.get(f"{url}/v1/models/defect-classifier/manifest", headers=headers)
                latencies.append(time.perf_counter() - started)
                failures += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(device(t) for t in tokens))
        wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "requests": len(ms),
        "failures": failures,
        "requests_per_s": len(ms) / wall,
        "p50_ms": float(np.median(ms)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("--onnx", type=Path, default=None)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    onnx_path = args.onnx or latest_export()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        uri, tokens, public = prepare_store(root, onnx_path, args.devices)
        server = subprocess.Popen(
            [sys.executable, "-m", "flows.cli.main", "edge", "serve", "--port", str(args.port), "--state", str(root / "edge"),
             "--tracking-uri", uri, "--rate-per-address", "100000"],  # every simulated device shares 127.0.0.1
            env=os.environ | {"PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        url = f"http://127.0.0.1:{args.port}"
        try:
            for _ in range(200):
                try:
                    httpx.get(f"{url}/v1/models/x/manifest", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            pulls = pull_all(url, tokens, public, root)
            manifest = asyncio.run(hammer_manifest(url, tokens, args.seconds))
        finally:
            server.terminate()
            server.wait(timeout=10)
    result = {
        "onnx": str(onnx_path),
        "size_bytes": onnx_path.stat().st_size,
        "cpu_cores": os.cpu_count(),
        "pull": pulls,
        "manifest_load": manifest,
    }
    print(json.dumps(result, indent=2))
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/edge_load.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
