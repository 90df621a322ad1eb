"""What the device agent costs per image over bare `edge predict`, in the same process.

  python -m benchmarks.agent_overhead --onnx MODEL.int8.onnx [--images 200] [--rounds 5]

Baseline: what `shopfloor edge predict` does for one image as a camera delivers it, with the model
loaded once (decode, resize, one ONNX Runtime call, the verdict). Agent: `Agent.process` on the same
image: the same, plus its sha256, the image statistics, the embedding, the result line written and
fsync'ed to the outbox, and the telemetry window (closed and queued every 64 images). Rounds
alternate the two so machine drift hits both; the ratio of medians is the figure (bar: < 1.10).
Writes benchmarks/results/agent_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TILES = REPO / "data" / "magnetic_tiles"


def _images(count: int) -> list[Path]:
    found = sorted(p for p in TILES.rglob("*.jpg"))
    return found[:: max(1, len(found) // count)][:count]


def _bare(model, images: list[Path]) -> float:
    from inputs.images import load_batch

    started = time.perf_counter()
    for path in images:
        proba, _ = model.run(load_batch([str(path)], model.size))
        model.verdict(str(path), proba[0])
    return (time.perf_counter() - started) / len(images)


def _agent(onnx: Path, images: list[Path], work: Path) -> float:
    from device.agent import Agent, AgentConfig

    dest = work / "models"
    (dest / "tiles" / "current").mkdir(parents=True)
    shutil.copy2(onnx, dest / "tiles" / "current" / "model.onnx")
    agent = Agent(AgentConfig("tiles", dest, work / "outbox.jsonl", work / "state", check_every_s=3600), None)
    agent.refresh(force=True)
    started = time.perf_counter()
    for path in images:
        agent.process(path)
    return (time.perf_counter() - started) / len(images)


def main() -> None:
    from core.settings import apply_offline_defaults
    from device.images import ImageModel

    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    images = _images(args.images)
    model = ImageModel(args.onnx)
    _bare(model, images[:10])  # warm both paths once
    bare, agent = [], []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as scratch:
            if r % 2:
                agent.append(_agent(args.onnx, images, Path(scratch)))
                bare.append(_bare(model, images))
            else:
                bare.append(_bare(model, images))
                agent.append(_agent(args.onnx, images, Path(scratch)))
    result = {"onnx": str(args.onnx), "images": len(images), "rounds": args.rounds,
              "bare_ms_per_image": [round(1000 * b, 2) for b in bare], "agent_ms_per_image": [round(1000 * a, 2) for a in agent],
              "overhead_ratio": round(statistics.median(agent) / statistics.median(bare), 3)}  # fmt: skip
    print(json.dumps(result, indent=2))
    (REPO / "benchmarks" / "results" / "agent_overhead.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
