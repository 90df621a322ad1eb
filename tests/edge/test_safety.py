"""Issue 22's findings on the edge server, each reproduced against a live server: nothing unapproved
reaches a device, and the server bounds what it accepts before authentication."""

from __future__ import annotations

import resource
import socket

import httpx
import pytest
from typer.testing import CliRunner

from edge.devices import DeviceStore
from edge.guard import RateLimits
from edge.server import EdgeSettings, create_app
from flows.cli.main import app
from registry.images import release
from registry.lifecycle import CHAMPION, history
from tests.fixtures.data import REPO
from tests.fixtures.models import LENIENT, register_exports
from tests.fixtures.servers import live_server

pytestmark = pytest.mark.slow
MODEL = "tiles"
FAILING = LENIENT.model_copy(update={"min_macro_f1": 0.99})


@pytest.fixture
def gated(exported_pair, registry_store, tmp_path):
    """v1 passed its gate and is champion; v2's gate failed (a candidate); a live server; one device."""
    reports, manifest = exported_pair
    cfg, client = registry_store
    v1, v2 = register_exports(reports, manifest=manifest)
    frozen = manifest[manifest["split"] == "test"]
    assert release(LENIENT, MODEL, v1, reports[0].flat(), frozen, "test")[1]
    assert not release(FAILING, MODEL, v2, reports[1].flat(), frozen, "test")[0].passed
    settings = EdgeSettings(state_dir=tmp_path / "edge", tracking_uri=cfg.tracking_uri, alias_ttl_s=0.0,
                            limits=RateLimits(per_address_per_s=1000, per_token_per_s=1000))  # fmt: skip
    with live_server(create_app(settings)) as url:
        store = DeviceStore(settings.devices_path)
        token = store.enroll("press-1")
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        yield {"url": url, "http": http, "client": client, "cfg": cfg, "v1": v1, "v2": v2, "store": store,
               "settings": settings, "root": tmp_path, "frozen": frozen}  # fmt: skip
        http.close()


def test_a_gate_failed_candidate_cannot_be_downloaded(gated):
    """Finding: GET /artifact?version=4 returned a version whose gate had failed (it held `candidate`)."""
    http = gated["http"]
    assert http.get(f"/v1/models/{MODEL}/artifact", params={"version": gated["v2"]}).status_code == 404
    ok = http.get(f"/v1/models/{MODEL}/artifact")
    assert ok.status_code == 200 and ok.headers["x-model-version"] == gated["v1"]


def test_a_champion_moved_in_the_mlflow_ui_to_a_failed_version_is_refused_until_approved(gated):
    """Finding: an alias moved in the UI to a gate-failed version was served at once."""
    http, client = gated["http"], gated["client"]
    http.get(f"/v1/models/{MODEL}/manifest")  # v1 in service
    client.set_registered_model_alias(MODEL, CHAMPION, gated["v2"])  # what the MLflow UI does
    manifest = http.get(f"/v1/models/{MODEL}/manifest").json()
    assert manifest["version"] == gated["v1"]  # the last approved version stays in service
    assert http.get(f"/v1/models/{MODEL}/artifact", params={"version": gated["v2"]}).status_code == 404
    [refusal] = gated["store"].refusals()
    assert (refusal.model, refusal.version) == (MODEL, gated["v2"])
    runner, state = CliRunner(), str(gated["settings"].state_dir)
    status = runner.invoke(app, ["edge", "status", "--state", state], env={"COLUMNS": "250"})
    assert status.exit_code == 0 and f"refused {MODEL} v{gated['v2']}" in status.output
    assert any(e.action == "edge-refused" and e.to_version == gated["v2"] for e in history(client, MODEL))
    shown = runner.invoke(app, ["registry", "history", MODEL, "--tracking-uri", gated["cfg"].tracking_uri],
                          env={"COLUMNS": "250"})  # fmt: skip
    assert "refused by the edge server" in shown.output

    approve = runner.invoke(app, ["registry", "approve", MODEL, gated["v2"], "--override-gates", "--reason",
                                  "accepted after review", "--tracking-uri", gated["cfg"].tracking_uri])  # fmt: skip
    assert approve.exit_code == 0, approve.output
    assert http.get(f"/v1/models/{MODEL}/manifest").json()["version"] == gated["v2"]
    assert client.get_model_version(MODEL, gated["v2"]).tags["approved_by"].startswith("user:")


def test_a_device_gets_only_the_version_assigned_to_it(gated):
    """A canary runs the new approved version; a line device may not fetch it by naming it."""
    store = gated["store"]
    canary = httpx.Client(
        base_url=gated["url"], headers={"Authorization": f"Bearer {store.enroll('cam-1', 'canary')}"}
    )
    gated["http"].get(f"/v1/models/{MODEL}/manifest")
    store.set_rollout(MODEL, gated["v1"], "all")
    release(LENIENT.model_copy(update={"not_worse_than_champion": False}), MODEL, gated["v2"],
            {"int8_macro_f1_drop": 0, "export_top1_agreement": 1, "onnx_int8_latency_ms_p95": 1}, gated["frozen"], "test")  # fmt: skip
    assert canary.get(f"/v1/models/{MODEL}/manifest").json()["version"] == gated["v2"]
    assert gated["http"].get(f"/v1/models/{MODEL}/manifest").json()["version"] == gated["v1"]
    assert (
        gated["http"].get(f"/v1/models/{MODEL}/artifact", params={"version": gated["v2"]}).status_code == 404
    )
    assert canary.get(f"/v1/models/{MODEL}/artifact", params={"version": gated["v2"]}).status_code == 200
    canary.close()


def test_an_unauthenticated_huge_body_is_refused_before_it_is_read(gated):
    """Finding: a 300 MB unauthenticated POST raised the server's memory by ~650 MB before the 401."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; the server runs in this process
    host, port = gated["url"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/devices/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 300000000\r\n\r\n" + b"x" * 65536)  # fmt: skip
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")
    chunked = httpx.post(f"{gated['url']}/v1/devices/heartbeat", content=(b"y" * 65536 for _ in range(1600)))
    assert chunked.status_code == 413  # 100 MB without a length: cut off at the limit
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 50, grown_mb


def test_an_authenticated_heartbeat_is_bounded_and_checked(gated):
    """Findings: a 500 MB heartbeat was accepted; a 5 MB `version` was stored; 422s echoed the body."""
    http = gated["http"]
    assert http.post("/v1/devices/heartbeat", content=b"{" + b" " * 600_000 + b"}").status_code == 413
    huge = http.post("/v1/devices/heartbeat", json={"model": MODEL, "version": "1" * 5_000_000})
    assert huge.status_code == 413  # the 5 MB version string of the finding
    long_version = http.post("/v1/devices/heartbeat", json={"model": MODEL, "version": "9" * 5000})
    assert long_version.status_code == 422  # within the body limit, refused by the field's own limit
    echoed = http.post("/v1/devices/heartbeat", json={"model": MODEL, "version": "not-a-number-SECRET"})
    assert echoed.status_code == 422 and "SECRET" not in echoed.text and "version" in echoed.text
    assert gated["store"].assignment("press-1", MODEL) is None  # nothing stored
    good = http.post("/v1/devices/heartbeat", json={"model": MODEL, "version": gated["v1"], "status": "ok"})
    assert (
        good.status_code == 200 and gated["store"].assignment("press-1", MODEL).running_version == gated["v1"]
    )


def test_head_and_if_none_match_star(gated):
    http = gated["http"]
    head = http.head(f"/v1/models/{MODEL}/artifact")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 1000
    assert http.head(f"/v1/models/{MODEL}/manifest").status_code == 200
    assert http.get(f"/v1/models/{MODEL}/artifact", headers={"If-None-Match": "*"}).status_code == 304


def test_requests_are_rate_limited_per_token_and_per_address(exported_pair, registry_store, tmp_path):
    cfg, _ = registry_store
    settings = EdgeSettings(state_dir=tmp_path / "edge", tracking_uri=cfg.tracking_uri,
                            limits=RateLimits(per_address_per_s=5, per_token_per_s=2, burst_s=2))  # fmt: skip
    with live_server(create_app(settings)) as url:
        token = DeviceStore(settings.devices_path).enroll("press-2")
        codes = [httpx.get(f"{url}/v1/models/{MODEL}/manifest", headers={"Authorization": f"Bearer {token}"}).status_code
                 for _ in range(8)]  # fmt: skip
        assert 429 in codes and codes.index(429) <= 5
        guesses = [httpx.get(f"{url}/v1/models/{MODEL}/manifest", headers={"Authorization": f"Bearer guess-{i}"})
                   for i in range(60)]  # fmt: skip
        limited = [g for g in guesses if g.status_code == 429]
        assert limited and "retry-after" in limited[0].headers  # guessing tokens from one address is slowed


def test_the_served_file_names_no_build_host_path(gated):
    body = gated["http"].get(f"/v1/models/{MODEL}/artifact").content
    for fragment in (str(REPO), "/tmp/", "/home/", "/root/", ".venv"):
        assert fragment.encode() not in body, fragment
