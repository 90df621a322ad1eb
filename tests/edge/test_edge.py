"""Edge delivery against a live server on loopback: auth, caching, resumable downloads, faults."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import httpx
import pytest

from core.signing import SignatureError, load_or_create_key, public_pem
from device.client import EdgeClient, PullError
from edge.devices import DeviceStore
from edge.server import EdgeSettings, create_app
from registry.lifecycle import promote, rollback
from tests.fixtures.models import approve_for_test, register_exports
from tests.fixtures.servers import CuttingProxy, live_server

pytestmark = pytest.mark.slow
MODEL = "tiles"


@pytest.fixture
def edge(exported_pair, registry_store, tmp_path):
    """Two registered versions, v1 champion; a live server; enrolment helper."""
    reports, _ = exported_pair
    cfg, client = registry_store
    v1, v2 = register_exports(reports)
    approve_for_test(client, MODEL, v1, v2)
    promote(client, MODEL, v1, "user:test", None)
    settings = EdgeSettings(state_dir=tmp_path / "edge", tracking_uri=cfg.tracking_uri, alias_ttl_s=0.0)
    app = create_app(settings)
    store = DeviceStore(settings.devices_path)
    with live_server(app) as url:
        yield {
            "url": url,
            "store": store,
            "settings": settings,
            "client": client,
            "v1": v1,
            "v2": v2,
            "root": tmp_path,
        }


def device(
    edge, name: str, group: str = "all", url: str | None = None, public: bytes | None = None
) -> EdgeClient:
    token = edge["store"].enroll(name, group)
    return EdgeClient(
        url or edge["url"],
        token,
        public or edge["settings"].public_key_path.read_bytes(),
        edge["root"] / "devices" / name,
    )


def test_pull_installs_a_verified_model_and_reports_it(edge):
    d = device(edge, "press-1")
    result = d.pull(MODEL)
    assert result.changed and result.version == edge["v1"] and result.path.exists()
    assert d.current(MODEL)["version"] == edge["v1"]
    assert d.pull(MODEL).changed is False  # same sha256: nothing downloaded
    [row] = [x for x in edge["store"].devices() if x.name == "press-1"]
    assert row.last_seen_ms is not None
    assert edge["store"].assignment("press-1", MODEL).running_version == edge["v1"]


def test_http_caching_and_ranges(edge):
    d = device(edge, "press-2")
    manifest = d.manifest(MODEL)
    url = f"{edge['url']}/v1/models/{MODEL}/artifact"
    full = d.http.get(url)
    assert full.status_code == 200 and full.headers["etag"] == f'"{manifest["sha256"]}"'
    assert d.http.get(url, headers={"If-None-Match": full.headers["etag"]}).status_code == 304
    part = d.http.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == full.content[100:200]


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        (f"/v1/models/{MODEL}/manifest", {}, 401),
        (f"/v1/models/{MODEL}/manifest", {"Authorization": "Bearer not-a-token"}, 401),
        ("/v1/models/no-such-model/manifest", None, 404),
        ("/v1/models/..%2F..%2Fetc%2Fpasswd/manifest", None, 404),
        ("/v1/models/%2Fetc%2Fpasswd/artifact", None, 404),
        (f"/v1/models/{MODEL}/artifact?version=../../mlflow.db", None, 404),
        (f"/v1/models/{MODEL}/artifact?version=999", None, 404),
    ],
)
def test_bad_requests_get_a_plain_4xx(edge, path, headers, status):
    token = edge["store"].enroll(f"probe-{abs(hash(path)) % 10**6}-{status}")
    response = httpx.get(
        edge["url"] + path, headers={"Authorization": f"Bearer {token}"} if headers is None else headers
    )
    assert response.status_code == status
    assert (
        "Traceback" not in response.text and "/tmp" not in response.text and "mlflow.db" not in response.text
    )


def test_download_cut_off_mid_file_resumes_and_verifies(edge):
    port = int(edge["url"].rsplit(":", 1)[1])
    proxy = CuttingProxy(port, after=40_000, cuts=2)
    try:
        d = device(edge, "press-3", url=f"http://127.0.0.1:{proxy.port}")
        result = d.pull(MODEL)
    finally:
        proxy.close()
    assert proxy.cut_count == 2 and result.version == edge["v1"]
    assert d.current(MODEL)["sha256"] == d.manifest(MODEL)["sha256"]


def test_tampered_artifact_is_refused_and_the_running_model_stays(edge):
    d = device(edge, "press-4")
    d.pull(MODEL)
    promote(edge["client"], MODEL, edge["v2"], "user:test", None)
    d.manifest(MODEL)  # the server fetches and signs v2
    cached = edge["settings"].state_dir / "cache" / MODEL / edge["v2"] / "model.onnx"
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")  # someone edits the file on the server
    with pytest.raises(PullError, match="sha256"):
        d.pull(MODEL)
    assert d.current(MODEL)["version"] == edge["v1"]


def test_wrong_signature_is_refused(edge):
    stranger = public_pem(load_or_create_key(edge["root"] / "other.pem"))
    d = device(edge, "press-5", public=stranger)
    with pytest.raises(SignatureError):
        d.pull(MODEL)
    assert d.current(MODEL) is None


def test_revoked_token_keeps_the_installed_model(edge):
    d = device(edge, "press-6")
    d.pull(MODEL)
    edge["store"].revoke("press-6")
    with pytest.raises(PullError, match="401"):
        d.pull(MODEL)
    assert d.current(MODEL)["version"] == edge["v1"] and Path(d.current_model_path(MODEL)).exists()


def test_canary_first_then_everyone(edge):
    canary, line = device(edge, "canary-1", "canary"), device(edge, "press-7")
    canary.pull(MODEL), line.pull(MODEL)
    edge["store"].set_rollout(MODEL, edge["v1"], "all")
    promote(edge["client"], MODEL, edge["v2"], "user:test", None)
    assert canary.pull(MODEL).version == edge["v2"]
    assert line.pull(MODEL).version == edge["v1"]  # not yet rolled out to all
    edge["store"].set_rollout(MODEL, edge["v2"], "all")
    assert line.pull(MODEL).version == edge["v2"]
    assert line.rollback(MODEL) == edge["v1"] and line.current(MODEL)["version"] == edge["v1"]


def test_a_version_retrained_for_a_drifted_device_reaches_it_first_and_only_once_promoted(edge):
    """Issue 23: the retraining run makes the drifted device a canary of its new version before the
    gate; a version the gate did not promote never reaches it, a promoted one reaches it alone."""
    drifted, line = device(edge, "motor-b"), device(edge, "motor-a")  # no canary group at all
    drifted.pull(MODEL), line.pull(MODEL)
    edge["store"].add_canaries(MODEL, edge["v2"], ["motor-b"])
    assert drifted.pull(MODEL).version == edge["v1"]  # v2 is not champion: no gate has promoted it
    promote(edge["client"], MODEL, edge["v2"], "flow:retrain", None)
    assert drifted.pull(MODEL).version == edge["v2"]
    assert line.pull(MODEL).version == edge["v1"]  # the rest of the fleet waits for the rollout
    edge["store"].set_rollout(MODEL, edge["v2"], "all")
    assert line.pull(MODEL).version == edge["v2"]


def test_rollback_during_pulls_leaves_every_device_verified(edge):
    promote(edge["client"], MODEL, edge["v2"], "user:test", None)
    devices = [device(edge, f"line-{i}") for i in range(12)]
    errors = []

    def pull_many(d):
        for _ in range(3):
            try:
                d.pull(MODEL)
            except PullError as err:  # a pull may lose the race; the device must still be fine
                errors.append(err)

    threads = [threading.Thread(target=pull_many, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    rollback(edge["client"], MODEL, "user:test")
    for t in threads:
        t.join()
    for d in devices:
        d.pull(MODEL)  # settles on the rolled-back champion
        installed = d.current(MODEL)
        assert installed["version"] == edge["v1"]
        assert (
            installed["sha256"]
            == __import__("hashlib").sha256(d.current_model_path(MODEL).read_bytes()).hexdigest()
        )
    assert not errors


def test_status_lists_devices_and_versions(edge):
    d = device(edge, "press-8")
    d.pull(MODEL)
    row = edge["store"].assignment("press-8", MODEL)
    assert row.running_version == row.assigned_version == edge["v1"]
    assert {x.name for x in edge["store"].devices()} >= {"press-8"}
    shutil.rmtree(edge["root"] / "devices", ignore_errors=True)


def test_one_unreadable_file_in_a_batch_is_reported_and_the_others_are_classified(
    edge, tile_subset_master, tmp_path
):
    """Finding: one corrupt image aborted a whole `edge predict` batch; a missing file read "cannot decode"."""
    from device.images import predict_files

    path = device(edge, "press-10").pull(MODEL).path
    good = [str(p) for p in sorted(tile_subset_master.rglob("*.jpg"))[:2]]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(Path(good[0]).read_bytes()[:2000])
    verdicts, errors = predict_files(path, [good[0], str(corrupt), str(tmp_path / "gone.jpg"), good[1]])
    assert [v.path for v in verdicts] == good
    assert [str(e).split(": ")[:2] for e in errors] == [
        [str(corrupt), "cannot decode as an image (corrupt, truncated or not an image file)"],
        [str(tmp_path / "gone.jpg"), "no such file"],
    ]


def test_pulled_model_predicts_real_images(edge, tile_subset_master):
    from device.images import predict_files

    d = device(edge, "press-9")
    path = d.pull(MODEL).path
    images = [str(p) for p in sorted(tile_subset_master.rglob("*.jpg"))[:4]]
    verdicts, errors = predict_files(path, images)
    assert errors == []
    assert [v.path for v in verdicts] == images
    assert all(
        v.label.startswith("MT_") and 0 < v.probability <= 1 and v.reject in (True, False) for v in verdicts
    )
