"""`shopfloor device simulate`: replay a folder of images or sensor files as N devices, for demos and benchmarks.

Each simulated device is a real agent (device.agent) with its own token, model folder, outbox and
telemetry buffer, talking to a real edge server; files are dealt to the devices round-robin. A
`brightness` factor on some devices stands for a lamp someone moved: their images are brightened
before they reach the inbox.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.agent import Agent, AgentConfig
from device.client import EdgeClient
from inputs.images import read_rgb


@dataclass(frozen=True)
class SimulatedDevice:
    name: str
    token: str
    brightness: float = 1.0


def _feed(files: list[Path], inbox: Path, brightness: float) -> None:
    from PIL import Image

    inbox.mkdir(parents=True, exist_ok=True)
    for path in files:
        if brightness == 1.0 or path.suffix.lower() in {".npz", ".csv", ".parquet"}:
            shutil.copy2(path, inbox / path.name)
        else:
            rgb = np.clip(read_rgb(path).astype(np.float32) * brightness, 0, 255).astype(np.uint8)
            Image.fromarray(rgb).save(inbox / f"{path.stem}.png")  # grey files stay grey: equal channels


def simulate(files: list[Path], devices: list[SimulatedDevice], server: str, public_key: bytes, work: Path,
             model: str, window_items: int = 64) -> dict[str, int]:  # fmt: skip
    """Run every device's agent over its share of `files`; returns results written per device."""

    def run(index: int) -> tuple[str, int]:
        device = devices[index]
        root = work / device.name
        _feed(files[index :: len(devices)], root / "inbox", device.brightness)
        client = EdgeClient(server, device.token, public_key, root / "models")
        try:
            cfg = AgentConfig(model, root / "models", root / "outbox.jsonl", root / "state", root / "inbox",
                              check_every_s=30.0, window_items=window_items)  # fmt: skip
            return device.name, Agent(cfg, client).run(stop_when_idle=True)
        finally:
            client.close()

    with ThreadPoolExecutor(min(len(devices), 8)) as pool:
        return dict(pool.map(run, range(len(devices))))
