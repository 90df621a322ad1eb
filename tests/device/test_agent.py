"""The device agent against a live edge server: inbox to outbox, telemetry, restarts, offline, new versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from device.agent import Agent, AgentConfig, Ledger
from device.client import EdgeClient
from edge.telemetry import TelemetryStore
from tests.fixtures.data import CWRU, TILES

pytestmark = pytest.mark.slow
IMAGES = (
    sorted((TILES / "MT_Free" / "Imgs").glob("*.jpg"))[:6]
    + sorted((TILES / "MT_Crack" / "Imgs").glob("*.jpg"))[:4]
)


def agent(fleet, root: Path, model: str = "tiles", server: str | None = None, **cfg) -> Agent:
    tokens = fleet.setdefault("tokens", {})  # one enrolment per device folder, reused after a "restart"
    token = tokens.get(root.name) or tokens.setdefault(root.name, fleet["devices"].enroll(root.name))
    client = EdgeClient(server or fleet["url"], token, fleet["key"].read_bytes(), root / "models")
    settings = {"check_every_s": 0.0, "window_items": 4} | cfg
    return Agent(
        AgentConfig(
            model, root / "models", root / "outbox.jsonl", root / "state", root / "inbox", **settings
        ),
        client,
    )


def inbox(root: Path, files: list[Path]) -> Path:
    folder = root / "inbox"
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, folder / path.name)
    return folder


def results(root: Path) -> list[dict]:
    return [
        r for r in map(json.loads, (root / "outbox.jsonl").read_text().splitlines()) if r["type"] == "result"
    ]


def test_images_dropped_in_the_inbox_are_scored_once_and_reported(fleet, tmp_path):
    inbox(tmp_path, IMAGES)
    written = agent(fleet, tmp_path).run(stop_when_idle=True)
    assert written == len(IMAGES) and sorted(r["file"] for r in results(tmp_path)) == sorted(
        p.name for p in IMAGES
    )
    first = results(tmp_path)[0]
    assert first["version"] == fleet["tiles_version"] and set(first["probabilities"]) and first["label"]
    assert (
        not list((tmp_path / "inbox").glob("*.jpg"))
        and len(list((tmp_path / "inbox" / "done").glob("*.jpg"))) == 10
    )
    windows = [
        w
        for _, w in TelemetryStore(fleet["settings"].telemetry_path).windows("tiles")
        if w.device == tmp_path.name
    ]
    assert [w.window.items for w in windows] == [4, 4, 2]  # two full windows and the rest when it stopped
    assert len(windows[0].window.embeddings[0]) == 16 and sum(windows[0].window.class_counts) == 4


def test_a_killed_agent_resumes_without_losing_or_doubling_results(fleet, tmp_path, monkeypatch):
    inbox(tmp_path, IMAGES)
    crashed = agent(fleet, tmp_path)
    moves = iter(range(100))

    def killed_after_three(path):  # the process dies after writing its 4th result, before moving the file
        if next(moves) == 3:
            raise KeyboardInterrupt
        Agent._done(crashed, path)

    monkeypatch.setattr(crashed, "_done", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        crashed.run(stop_when_idle=True)
    with (tmp_path / "outbox.jsonl").open("a") as handle:
        handle.write('{"type": "result", "file": "half')  # and it was writing a line when it died
    assert len(Ledger.load(tmp_path / "outbox.jsonl").done) == 4
    agent(fleet, tmp_path).run(stop_when_idle=True)
    names = [r["file"] for r in results(tmp_path)]
    assert sorted(names) == sorted(p.name for p in IMAGES) and len(names) == len(set(names))
    windows = [
        w
        for _, w in TelemetryStore(fleet["settings"].telemetry_path).windows("tiles")
        if w.device == tmp_path.name
    ]
    assert sum(w.window.items for w in windows) == len(IMAGES)  # every result counted once in telemetry


def test_files_whose_result_line_a_power_cut_lost_are_scored_again(fleet, tmp_path):
    """Lines are synced to disk per window and per second, not per file; a power cut may lose the last
    lines while their files already sit in inbox/done/: those go back to the inbox, scored once."""
    inbox(tmp_path, IMAGES)
    agent(fleet, tmp_path, window_items=100).run(stop_when_idle=True)
    lines = (tmp_path / "outbox.jsonl").read_text().splitlines()
    (tmp_path / "outbox.jsonl").write_text("\n".join(lines[:6]) + "\n")  # what reached the disk
    again = agent(fleet, tmp_path, window_items=100)
    assert sorted(p.name for p in (tmp_path / "inbox").glob("*.jpg")) == sorted(
        r["file"] for r in map(json.loads, lines[6:]) if r["type"] == "result"
    )
    again.run(stop_when_idle=True)
    names = [r["file"] for r in results(tmp_path)]
    assert sorted(names) == sorted(p.name for p in IMAGES) and len(names) == len(set(names))


def test_offline_windows_wait_on_disk_bounded_and_go_out_later(fleet, tmp_path):
    from tests.fixtures.servers import free_port

    inbox(tmp_path, IMAGES)
    online = agent(fleet, tmp_path, check_every_s=3600.0)
    online.refresh(force=True)  # installs the model while the server answers
    online.client.server = f"http://127.0.0.1:{free_port()}"  # then the network goes
    online.outbox.capacity = 2
    online.run(stop_when_idle=True)
    assert len(results(tmp_path)) == len(IMAGES)  # the line kept running offline
    assert len(online.outbox.waiting()) == 2  # 3 windows, room for 2: the oldest went
    online.client.server = fleet["url"]  # the network is back
    assert online.outbox.send(online.client) == 2 and online.outbox.waiting() == []
    windows = [
        w
        for _, w in TelemetryStore(fleet["settings"].telemetry_path).windows("tiles")
        if w.device == tmp_path.name
    ]
    assert [w.window.dropped_windows for w in windows] == [0, 1]  # the newest tells the server of the gap


def test_a_sensor_gateway_scores_files_and_raises_alarms(fleet, tmp_path):
    inbox(tmp_path, [CWRU / "cwru12k_DE_IR_007_1hp.npz", CWRU / "cwru12k_DE_normal_0hp.npz"])
    agent(fleet, tmp_path, model="bearing-anomaly", window_items=50).run(stop_when_idle=True)
    by_file = {r["file"]: r for r in results(tmp_path)}
    fault, normal = by_file["cwru12k_DE_IR_007_1hp.npz"], by_file["cwru12k_DE_normal_0hp.npz"]
    assert (
        fault["alarm"] and fault["alarms"] >= 0.9 * fault["windows"] and "inner-race" in fault["explanation"]
    )
    assert normal["alarms"] <= 0.05 * normal["windows"]
    windows = [w for _, w in TelemetryStore(fleet["settings"].telemetry_path).windows("bearing-anomaly")]
    assert windows and windows[0].window.kind == "vibration-anomaly" and windows[0].window.scores


def test_simulated_devices_replay_a_folder_and_report_telemetry(fleet, tmp_path):
    from device.simulate import SimulatedDevice, simulate

    devices = [SimulatedDevice(f"sim-{i}", fleet["devices"].enroll(f"{tmp_path.name}-sim-{i}"), b)
               for i, b in enumerate((1.0, 1.3))]  # fmt: skip
    written = simulate(
        IMAGES, devices, fleet["url"], fleet["key"].read_bytes(), tmp_path, "tiles", window_items=5
    )
    assert written == {"sim-0": 5, "sim-1": 5}
    stored = [w for _, w in TelemetryStore(fleet["settings"].telemetry_path).windows("tiles")
              if w.device.startswith(f"{tmp_path.name}-sim-")]  # fmt: skip
    brightness = {w.device[-5:]: np.mean(w.window.image_stats["brightness"]) for w in stored}
    assert len(stored) == 2 and brightness["sim-1"] > 1.15 * brightness["sim-0"]  # the moved lamp shows
