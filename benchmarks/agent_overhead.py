"""What the device agent costs per image over bare `edge predict`, in the same process.

  python -m benchmarks.agent_overhead --onnx MODEL.int8.onnx [--images 200] [--rounds 5]

Baseline: what `shopfloor edge predict` does for one image as a camera delivers it, with the model
loaded once (decode, resize, one ONNX Runtime call, the verdict). Agent: the same images, plus each
file's sha256, the image statistics, the embedding, the result line written to the outbox (synced
to disk at each window's close and at least once a second), and the telemetry window (closed and
queued every 64 images); once called per file as it arrives, once draining an inbox that holds
them all (as `shopfloor device run` does with a backlog). Rounds alternate the order so machine drift hits every
path; the ratio of medians is the figure (bar: < 1.10).
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


def _agent(onnx: Path, images: list[Path], work: Path, backlog: bool) -> float:
    """Per image: one `process` call per file as it arrives, or draining an inbox holding them all."""
    from device.agent import Agent, AgentConfig

    dest = work / "models"
    (dest / "tiles" / "current").mkdir(parents=True)
    shutil.copy2(onnx, dest / "tiles" / "current" / "model.onnx")
    inbox = work / "inbox"
    inbox.mkdir()
    if backlog:
        for path in images:
            shutil.copy2(path, inbox / path.name)
    cfg = AgentConfig(
        "tiles", dest, work / "outbox.jsonl", work / "state", inbox if backlog else None, check_every_s=3600
    )
    agent = Agent(cfg, None)
    agent.refresh(force=True)
    warm = work / "warm"  # a device agent runs for hours: its session is warm, as the baseline's is
    warm.mkdir()
    for i, path in enumerate(images[:20]):
        shutil.copy2(path, warm / f"warm-{i}{path.suffix}")
        agent.process(warm / f"warm-{i}{path.suffix}")
    started = time.perf_counter()
    if backlog:
        agent.run(stop_when_idle=True)
    else:
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
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    images = _images(args.images)
    model = ImageModel(args.onnx)
    _bare(model, images[:10])  # warm both paths once
    times: dict[str, list[float]] = {"bare": [], "agent_one_by_one": [], "agent_backlog": []}
    for r in range(args.rounds):
        order = list(times) if r % 2 == 0 else list(reversed(times))  # machine drift hits every path
        for name in order:
            with tempfile.TemporaryDirectory() as scratch:
                if name == "bare":
                    times[name].append(_bare(model, images))
                else:
                    times[name].append(_agent(args.onnx, images, Path(scratch), name == "agent_backlog"))
    median = {name: statistics.median(v) for name, v in times.items()}
    result = {"onnx": str(args.onnx), "images": len(images), "rounds": args.rounds,
              "ms_per_image": {name: [round(1000 * t, 2) for t in v] for name, v in times.items()},
              "overhead_ratio": {name: round(median[name] / median["bare"], 3) for name in ("agent_one_by_one", "agent_backlog")}}  # fmt: skip
    print(json.dumps(result, indent=2))
    (REPO / "benchmarks" / "results" / "agent_overhead.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
