"""Telemetry windows: schema-checked, bounded, authenticated per device, stored once."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from core.telemetry import WindowBuilder, image_stats
from edge.devices import DeviceStore
from edge.server import EdgeSettings, create_app
from edge.telemetry import TelemetryStore
from tests.fixtures.servers import live_server


@pytest.fixture
def server(tmp_path):
    settings = EdgeSettings(state_dir=tmp_path / "edge", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    with live_server(create_app(settings)) as url:
        store = DeviceStore(settings.devices_path)
        tokens = {name: store.enroll(name) for name in ("cam-1", "cam-2")}
        yield url, tokens, TelemetryStore(settings.telemetry_path)


def window(**changes) -> dict:
    builder = WindowBuilder("image-classifier", classes=3, sample_size=4)
    rng = np.random.default_rng(0)
    for _ in range(10):
        proba = rng.dirichlet(np.ones(3))
        builder.add_image(
            proba, rng.normal(size=16), image_stats(rng.integers(0, 256, (32, 32), dtype=np.uint8))
        )
    body = builder.summary() | {"window_id": "cam-1-0001", "model": "tiles", "version": "3",
                                "started": "2026-12-02T15:00:00Z", "ended": "2026-12-02T15:01:00Z"}  # fmt: skip
    return body | changes


def post(url: str, token: str, body) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/v1/devices/telemetry", content=content, timeout=30,
                      headers={"Authorization": f"Bearer {token}", "content-type": "application/json"})  # fmt: skip


def test_a_window_is_stored_once_and_a_replay_is_accepted_without_a_second_copy(server):
    url, tokens, store = server
    assert post(url, tokens["cam-1"], window()).json() == {"status": "stored"}
    assert post(url, tokens["cam-1"], window()).json() == {"status": "duplicate"}
    assert post(url, tokens["cam-2"], window()).json() == {"status": "stored"}  # ids are per device
    assert store.count() == 2
    [(_, first), _] = store.windows("tiles")
    assert first.device == "cam-1" and first.window.items == 10 and len(first.window.embeddings) == 4
    conflict = post(url, tokens["cam-1"], window(items=11))
    assert conflict.status_code == 409 and store.count() == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (window(kind="video"), 422),  # wrong schema
        (window(unexpected=1), 422),
        (window(items=-1), 422),
        (json.dumps(window()).replace("0.", "NaN", 1).encode(), 422),  # NaN is not a number here
        (window(top_probability=[0.5] * 300), 422),  # longer than the limit
        (window(device="cam-2"), 403),  # another device's window
        (b"{" + b" " * 70_000 + b"}", 413),  # a huge body
    ],
)
def test_bad_windows_are_refused_and_nothing_is_stored(server, body, status):
    url, tokens, store = server
    response = post(url, tokens["cam-1"], body)
    assert response.status_code == status, response.text
    assert store.count() == 0 and "NaN" not in response.text


def test_a_window_needs_a_device_token(server):
    url, _, store = server
    assert post(url, "not-a-token", window()).status_code == 401 and store.count() == 0


def test_image_statistics_and_the_reservoir():
    grey = np.zeros((10, 10), np.uint8)
    grey[:, 5:] = 255
    stats = image_stats(grey)
    assert stats["brightness"] == pytest.approx(127.5) and stats["clipped"] == 1.0 and stats["blur"] > 0
    builder = WindowBuilder("vibration-anomaly", sample_size=8, seed=1)
    for i in range(1000):
        builder.add_vibration(float(i), i % 100 == 0, np.full(3, float(i)))
    summary = builder.summary()
    assert summary["items"] == 1000 and summary["alarms"] == 10 and len(summary["scores"]) == 256
    sampled = [row[0] for row in summary["features"]]
    assert len(sampled) == 8 and max(sampled) > 500  # a uniform sample, not the first eight
