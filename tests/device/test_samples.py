"""Sample images of a window, for labelling: requested on the server, sent by the agent after its next
heartbeat, exported by `shopfloor monitor samples`; uploads nobody asked for, or too big, or not images,
are refused."""

from __future__ import annotations

import csv
import socket

import httpx
import pytest
from typer.testing import CliRunner

from edge.samples import MAX_FILE_BYTES, SampleStore
from edge.telemetry import TelemetryStore
from flows.cli.main import app
from tests.device.test_agent import IMAGES, agent, inbox

pytestmark = pytest.mark.slow
runner = CliRunner()


def windows_of(fleet, device: str) -> list[str]:
    stored = TelemetryStore(fleet["settings"].telemetry_path).windows("tiles", device=device)
    return [w.window.window_id for _, w in stored]


def test_requested_images_of_a_window_reach_the_server_and_export_for_labelling(fleet, tmp_path):
    root = tmp_path / "cam-samples"
    inbox(root, IMAGES)
    agent(fleet, root).run(stop_when_idle=True)  # windows of 4, 4 and 2 images
    first, second, _ = windows_of(fleet, root.name)
    samples = SampleStore(fleet["settings"].samples_dir)
    samples.request(root.name, second)
    samples.request(root.name, "long-gone-window")  # the agent never had it: answered as unavailable

    again = agent(fleet, root)  # restarted later: the window's files are known from the outbox
    again.refresh(force=True)  # its heartbeat learns of the requests and it sends the images
    sent = samples.get(root.name, second)
    assert (sent.state, sent.files, sent.missing) == ("delivered", 4, 0)
    done = root / "inbox" / "done"
    assert [p.read_bytes() for p in samples.files(root.name, second)] == [
        (done / p.name.split("-", 1)[1]).read_bytes() for p in samples.files(root.name, second)
    ]
    assert samples.get(root.name, "long-gone-window").state == "unavailable"
    assert samples.get(root.name, first) is None  # nothing is sent that was not asked for

    out, state = tmp_path / "to-label", str(fleet["settings"].state_dir)
    result = runner.invoke(
        app, ["monitor", "samples", root.name, "--window", second, "--out", str(out), "--state", state]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert len(rows) == 4 and {r["label"] for r in rows} == {""} and len({r["group"] for r in rows}) == 1
    assert all((out / r["path"]).is_file() for r in rows)
    rows[0]["label"] = "MT_Free"  # a person labels one, then exports again: the label is kept
    with (out / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "label", "group"])
        writer.writeheader()
        writer.writerows(rows)
    runner.invoke(
        app, ["monitor", "samples", root.name, "--window", second, "--out", str(out), "--state", state]
    )
    assert [r["label"] for r in csv.DictReader((out / "manifest.csv").open())] == ["MT_Free", "", "", ""]

    asked = runner.invoke(
        app, ["monitor", "samples", root.name, "--window", first, "--out", str(out), "--state", state]
    )
    assert (
        asked.exit_code == 0
        and "asked" in asked.output
        and samples.get(root.name, first).state == "requested"
    )
    unknown = runner.invoke(app, ["monitor", "samples", "no-such-camera", "--state", state])
    assert unknown.exit_code == 2 and "monitor status" in unknown.output


def too_big(url: str, token: str, path: str, length: int) -> bytes:
    """The server's first answer to a request that declares `length` bytes and sends none of them."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nx-file-name: a.jpg\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode())  # fmt: skip
        return sock.recv(4096)


def test_uploads_nobody_asked_for_or_too_big_or_not_images_are_refused(fleet, tmp_path):
    samples = SampleStore(fleet["settings"].samples_dir)
    me, other = fleet["devices"].enroll("cam-upload"), fleet["devices"].enroll("cam-other")
    samples.request("cam-other", "w-1")
    image = IMAGES[0].read_bytes()
    with httpx.Client(base_url=fleet["url"], headers={"Authorization": f"Bearer {me}"}) as http:

        def put(window: str, index: int, body: bytes, name: str = "a.jpg") -> int:
            return http.put(
                f"/v1/devices/samples/{window}/{index}", content=body, headers={"x-file-name": name}
            ).status_code

        assert put("w-1", 0, image) == 404  # another device's request: not this token's window
        assert put("never-asked", 0, image) == 404
        samples.request("cam-upload", "w-1")
        assert http.post("/v1/devices/heartbeat", json={"model": "tiles"}).json()["samples"] == ["w-1"]
        assert put("w-1", 0, b"MZ\x90\x00 not an image") == 422
        assert put("w-1", 0, image, name="../../etc/passwd.jpg") == 422
        assert put("w-1", 16, image) == 422
        assert too_big(fleet["url"], me, "/v1/devices/samples/w-1/0", MAX_FILE_BYTES + 1).startswith(
            b"HTTP/1.1 413"
        )
        assert too_big(fleet["url"], me, "/v1/devices/telemetry", 100_000).startswith(
            b"HTTP/1.1 413"
        )  # others keep 64 KiB
        assert (
            put("w-1", 0, image) == 200 and put("w-1", 0, image) == 200
        )  # the same bytes again: accepted once
        assert put("w-1", 0, IMAGES[1].read_bytes()) == 409  # never overwritten
        assert (
            http.post("/v1/devices/samples/w-1", json={"files": 2}).status_code == 409
        )  # one stored, two announced
        assert http.post("/v1/devices/samples/w-1", json={"files": 1}).json() == {"state": "delivered"}
        assert put("w-1", 1, image) == 404  # closed
    assert len(samples.files("cam-upload", "w-1")) == 1 and samples.files("cam-other", "w-1") == []
    with httpx.Client(base_url=fleet["url"], headers={"Authorization": f"Bearer {other}"}) as http:
        assert http.post("/v1/devices/heartbeat", json={"model": "tiles"}).json()["samples"] == ["w-1"]
