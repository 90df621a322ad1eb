"""The edge server against a hostile client, on loopback, every phase bounded in count and time.

  python -m benchmarks.edge_abuse [--onnx PATH]      (after `make demo`, or any exported int8 file)

The server runs as `shopfloor edge serve` in its own process with its default limits (16 KiB bodies,
50 requests/s per address, 5 per token) and its resident memory is sampled every 20 ms. Phases:
oversized bodies (declared and chunked, 1 MB to 1 GB, unauthenticated and authenticated), malformed
heartbeats, path tricks, foreign versions (a version whose gate failed, one that does not exist),
token guessing from one address, and 200 devices pulling at once (that phase against a second
server whose per-address limit is raised, as a plant whose devices share one NAT address would
set it). Records status codes, peak server memory per phase, requests/s. Writes
benchmarks/results/edge_abuse.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

from benchmarks.edge_load import latest_export, prepare_store, pull_all
from core.settings import apply_offline_defaults

MODEL = "defect-classifier"


class MemoryWatch:
    """Peak resident memory (MB) of a process, sampled every 20 ms between `mark` calls."""

    def __init__(self, pid: int) -> None:
        self.process, self.running = psutil.Process(pid), True
        self.peak = self.process.memory_info().rss / 1e6
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss / 1e6)
            time.sleep(0.02)

    def mark(self) -> float:
        peak, self.peak = self.peak, self.process.memory_info().rss / 1e6
        return round(peak, 1)


def serve(root: Path, uri: str, port: int, *extra: str) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "flows.cli.main", "edge", "serve", "--port", str(port),
                               "--state", str(root / "edge"), "--tracking-uri", uri, *extra],
                              start_new_session=True, stderr=(root / f"server-{port}.log").open("w"))  # fmt: skip
    for _ in range(600):
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models/x/manifest", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the edge server did not start")


def raw_post(port: int, declared: int, send: int, token: str | None) -> str:
    """A POST declaring `declared` bytes that sends `send` of them: the status line it gets, or how it ended."""
    auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/devices/heartbeat HTTP/1.1\r\nHost: x\r\n"
            + auth
            + f"Content-Length: {declared}\r\n\r\n".encode()
        )
        try:
            for _ in range(send // 65536):
                sock.sendall(b"x" * 65536)
        except OSError as err:
            return f"closed by server while sending ({type(err).__name__})"
        return sock.recv(64).split(b"\r\n")[0].decode() or "closed"


def bodies(port: int, token: str, watch: MemoryWatch) -> dict:
    out = {}
    for label, declared, send, auth in (("1 MB, unauthenticated", 10**6, 10**6, None),
                                        ("100 MB declared, 8 MB sent, unauthenticated", 10**8, 8 * 10**6, None),
                                        ("1 GB declared, 8 MB sent, authenticated", 10**9, 8 * 10**6, token)):  # fmt: skip
        out[label] = {"reply": raw_post(port, declared, send, auth), "server_peak_mb": watch.mark()}
    for size_mb in (10, 100):
        chunks = (b"y" * 65536 for _ in range(size_mb * 16))
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/devices/heartbeat", content=chunks, timeout=60)
        out[f"{size_mb} MB chunked, unauthenticated"] = {
            "reply": reply.status_code,
            "server_peak_mb": watch.mark(),
        }
    return out


def malformed(url: str, token: str) -> dict:
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    cases = {"not JSON": b"{nope", "wrong types": b'{"model": 5, "version": []}', "extra field": b'{"model": "m", "x": 1}',
             "5000-digit version": json.dumps({"model": MODEL, "version": "9" * 5000}).encode(),
             "control characters": json.dumps({"model": MODEL, "status": "\u0000\u001b[31m"}).encode(),
             "not UTF-8": b'{"model": "\xff\xfe"}'}  # fmt: skip
    out = {}
    for name, body in cases.items():
        reply = http.post("/v1/devices/heartbeat", content=body, headers={"content-type": "application/json"})
        out[name] = {"status": reply.status_code, "echoes_input": body[:20].decode("latin-1") in reply.text}
        time.sleep(0.25)  # stay under the per-token rate: this phase is about bodies
    return out


def paths_and_versions(url: str, token: str) -> dict:
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    probes = ["/v1/models/../../etc/passwd/manifest", "/v1/models/..%2F..%2Fmlflow.db/manifest",
              "/v1/models/%2Fetc%2Fpasswd/artifact", f"/v1/models/{'a' * 5000}/manifest",
              f"/v1/models/{MODEL}/artifact?version=../../mlflow.db", f"/v1/models/{MODEL}/artifact?version=2",
              f"/v1/models/{MODEL}/artifact?version=99999", f"/v1/models/{MODEL}/artifact?version={'9' * 400}"]  # fmt: skip
    out = {}
    for probe in probes:
        reply = http.get(probe)
        out[probe[:80]] = {"status": reply.status_code, "bytes": len(reply.content)}
        time.sleep(0.25)
    return out


def guessing(url: str, tries: int) -> dict:
    started, codes = time.perf_counter(), Counter()
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(tries):
            token = secrets.token_urlsafe(32)
            codes[
                http.get(
                    f"/v1/models/{MODEL}/manifest", headers={"Authorization": f"Bearer {token}"}
                ).status_code
            ] += 1
    return {
        "tries": tries,
        "status_codes": dict(codes),
        "requests_per_s": round(tries / (time.perf_counter() - started), 1),
    }


def register_foreign_version(uri: str, onnx_path: Path) -> None:
    """A second version with no approval (its gate failed): devices must never get it."""
    import mlflow
    import onnx

    mlflow.set_tracking_uri(uri)
    with mlflow.start_run():
        info = mlflow.onnx.log_model(
            onnx.load(str(onnx_path)),
            name="edge-int8",
            pip_requirements=["onnxruntime"],
            save_as_external_data=False,
        )
    version = mlflow.register_model(info.model_uri, MODEL).version
    mlflow.MlflowClient().set_model_version_tag(MODEL, version, "gate_passed", "false")


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("--onnx", type=Path, default=None)
    parser.add_argument("--devices", type=int, default=200)
    args = parser.parse_args()
    onnx_path = args.onnx or latest_export()
    result: dict = {"onnx_bytes": onnx_path.stat().st_size, "cpu_cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        uri, tokens, public = prepare_store(root, onnx_path, args.devices)
        register_foreign_version(uri, onnx_path)
        port = 8765
        server = serve(root, uri, port)
        watch, url = MemoryWatch(server.pid), f"http://127.0.0.1:{port}"
        try:
            result["idle_server_mb"] = watch.mark()
            result["bodies"] = bodies(port, tokens[0], watch)
            result["malformed"] = malformed(url, tokens[1])
            result["paths_and_versions"] = paths_and_versions(url, tokens[2])
            result["token_guessing"] = guessing(url, 500)
            result["after_abuse_mb"] = watch.mark()
        finally:
            watch.running = False
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        server = serve(root, uri, port + 1, "--rate-per-address", "100000")
        watch = MemoryWatch(server.pid)
        try:
            result["concurrent_pulls"] = pull_all(f"http://127.0.0.1:{port + 1}", tokens, public, root) | {
                "server_peak_mb": watch.mark()
            }
        finally:
            watch.running = False
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    print(json.dumps(result, indent=2))
    Path("benchmarks/results/edge_abuse.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
