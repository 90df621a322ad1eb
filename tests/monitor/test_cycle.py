"""Monitoring cycles on synthetic telemetry: drift-free devices stay quiet, a shifted one is found,
named and persistent, and every window is judged once."""

from __future__ import annotations

import re

import numpy as np
import pytest

from core.telemetry import WindowBuilder
from edge.telemetry import TelemetryStore, TelemetryWindow
from monitor.cycle import run_cycle
from monitor.detect import Rules
from monitor.reference import ImageItems, image_reference, vibration_reference
from monitor.store import MonitorStore


def images(n: int, rng, brightness: float = 100.0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Probabilities (n, 3), embeddings (n, 8) and image statistics of a line's parts."""
    proba = rng.dirichlet([8, 1, 1], size=n)
    embeddings = rng.normal(size=(n, 8)) + (brightness - 100.0) / 40.0
    stats = {"brightness": rng.normal(brightness, 5, n), "contrast": rng.normal(30, 3, n),
             "blur": rng.normal(200, 20, n), "clipped": rng.uniform(0, 0.01, n)}  # fmt: skip
    return proba, embeddings, stats


@pytest.fixture(scope="module")
def reference():
    proba, embeddings, stats = images(600, np.random.default_rng(0))
    labels = np.where(np.random.default_rng(1).random(600) < 0.9, proba.argmax(1), (proba.argmax(1) + 1) % 3)
    return image_reference(ImageItems(proba, embeddings, stats, labels), window_size=64)


def window(rng, i: int, brightness: float = 100.0) -> TelemetryWindow:
    builder = WindowBuilder("image-classifier", classes=3, sample_size=64, seed=i)
    proba, embeddings, stats = images(64, rng, brightness)
    for k in range(64):
        builder.add_image(proba[k], embeddings[k], {name: stats[name][k] for name in stats})
    return TelemetryWindow(**builder.summary(), window_id=f"w{i:04d}", model="tiles", version="1",
                           started=f"t{i}", ended=f"14:{i:02d}")  # fmt: skip


def test_drift_free_devices_stay_quiet_and_a_lamp_change_is_found_named_and_persistent(tmp_path, reference):
    telemetry, store = TelemetryStore(tmp_path / "t.db"), MonitorStore(tmp_path / "m.db")
    rng = np.random.default_rng(5)
    for cycle in range(4):
        for device in range(10):
            brightness = 123.0 if device == 7 and cycle >= 1 else 100.0  # someone moved a lamp at cycle 1
            telemetry.add(f"cam-{device:02d}", window(rng, cycle * 100 + device, brightness))
        report = run_cycle(
            telemetry, store, lambda m, v: reference, ["tiles"], Rules(persist_k=2, persist_n=3)
        )
        assert len(report.assessments) == 10
    states = {s.device: s for s in store.states()}
    assert states["cam-07"].state == "drift" and re.search(
        r"brightness \+2[1-5] %", states["cam-07"].explanation
    )
    assert "on cam-07 since 14:107" in states["cam-07"].explanation  # the first flagged window (cycle 1)
    assert "class mix unchanged" in states["cam-07"].explanation
    assert "estimated accuracy" in states["cam-07"].explanation
    assert all(s.state != "drift" for name, s in states.items() if name != "cam-07")
    assert (
        run_cycle(telemetry, store, lambda m, v: reference, ["tiles"]).assessments == []
    )  # each window once


def test_a_drift_is_announced_once_even_when_the_cycle_that_found_it_died_before_its_event(
    tmp_path, reference
):
    """Finding: the drift state was saved when the windows were judged and the event raised a step
    later; a cycle dying in between lost the device's retraining for good (it was never "newly" in
    drift again). An episode now counts as announced only once its event went out."""
    import sqlite3

    telemetry, store = TelemetryStore(tmp_path / "t.db"), MonitorStore(tmp_path / "m.db")
    rng = np.random.default_rng(5)
    for cycle in range(3):  # judged, and then the cycle "dies": nothing is announced
        telemetry.add("cam-07", window(rng, cycle, 123.0))
        run_cycle(telemetry, store, lambda m, v: reference, ["tiles"], Rules(persist_k=2, persist_n=3))
    [pending] = store.unannounced()
    assert pending.device == "cam-07" and pending.state == "drift"
    telemetry.add("cam-07", window(rng, 3, 123.0))  # the next cycle: still in drift, not newly
    report = run_cycle(telemetry, store, lambda m, v: reference, ["tiles"], Rules(persist_k=2, persist_n=3))
    assert report.newly_drifted == [] and [s.device for s in store.unannounced()] == ["cam-07"]
    store.announce(pending)
    assert store.unannounced() == []
    with sqlite3.connect(tmp_path / "m.db") as db:  # a store written before this table: its drifts went out
        db.execute("DROP TABLE announced")
    assert MonitorStore(tmp_path / "m.db").unannounced() == []


def test_windows_of_a_version_without_a_reference_are_counted_not_judged(tmp_path, reference):
    telemetry = TelemetryStore(tmp_path / "t.db")
    telemetry.add("cam-01", window(np.random.default_rng(0), 1))
    report = run_cycle(telemetry, MonitorStore(tmp_path / "m.db"), lambda m, v: None, ["tiles"])
    assert report.skipped == 1 and report.assessments == []


def test_a_vibration_gain_change_moves_the_features_and_is_flagged(tmp_path):
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(2000, 5))
    reference = vibration_reference(normal, normal[:, 0] * 0.1, [f"f{i}" for i in range(5)], threshold=0.25)
    telemetry, store = TelemetryStore(tmp_path / "t.db"), MonitorStore(tmp_path / "m.db")
    for i in range(3):
        for device, gain in (("motor-1", 0.0), ("motor-2", 1.0)):
            rows = rng.normal(size=(64, 5)) + np.array([gain, 0, 0, 0, 0])
            builder = WindowBuilder("vibration-anomaly", sample_size=32, seed=i)
            for row in rows:
                builder.add_vibration(float(row[0] * 0.1), row[0] * 0.1 > 0.25, row)
            telemetry.add(device, TelemetryWindow(**builder.summary(), window_id=f"w{i}", model="motor", version="2",
                                                  started="a", ended=f"b{i}"))  # fmt: skip
        run_cycle(telemetry, store, lambda m, v: reference, ["motor"], Rules(persist_k=2, persist_n=3))
    states = {s.device: s for s in store.states()}
    assert states["motor-2"].state == "drift" and "f0 +" in states["motor-2"].explanation
    assert states["motor-1"].state == "ok"


def test_a_reference_from_held_out_items_of_one_part_still_has_floors():
    """Found on the ball-screw line: its validation part is one camera position, and the reference
    failed ('need at least one array to concatenate') after the whole training."""
    proba, embeddings, stats = images(200, np.random.default_rng(2))
    one_part = np.full(200, "t2_x395000_397500")
    reference = image_reference(
        ImageItems(proba, embeddings, stats, proba.argmax(1), one_part), window_size=64
    )
    assert reference["floors"] and reference["items"] == 200
