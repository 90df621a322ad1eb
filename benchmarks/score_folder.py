"""Folder scoring vs one command per file: `shopfloor score anomaly` on 15 second-machine files.

  python -m benchmarks.score_folder [--repeats 3] [--tracking-uri URI --model NAME@alias]

The 15 files are the second machine's (benchmarks/second_machine.py: the normal record and 14 fault
records at 20 kHz, channels B1x/B1y). Without --tracking-uri a small model (20 trees) is trained
first with configs/anomaly-pump7.yaml into a temporary store. Then, in this one process and
interleaved per repeat: 15 separate `shopfloor score anomaly FILE` commands (what a user had to do),
and one `shopfloor score anomaly FOLDER`. Each is a fresh interpreter, as a user runs it. Reports
the median of each and their ratio; writes benchmarks/results/score_folder.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.second_machine import make_second_machine

OUT = Path("benchmarks/results/score_folder.json")
CONFIG = Path("configs/anomaly-pump7.yaml").resolve()
RECORDS = ("normal", "IR_007_0hp", "IR_007_1hp", "IR_014_0hp", "IR_014_2hp", "IR_021_3hp", "OR_007_at6_0hp",
           "OR_007_at6_2hp", "OR_014_at6_1hp", "OR_021_at6_0hp", "OR_021_at6_3hp", "B_007_0hp", "B_014_1hp",
           "B_021_2hp", "B_021_3hp")  # fmt: skip
SMALL = [
    "model.isolation_forest.n_estimators=20",
    "export.parity_windows=64",
    "promotion.max_false_alarm_rate=0.2",
]


def shopfloor(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flows.cli.main", *args], check=True, capture_output=True)
    return time.perf_counter() - started


def train(root: Path, data: Path) -> tuple[str, str]:
    uri = f"sqlite:///{root}/mlflow.db"
    sets = [f"--set={s}" for s in SMALL + [f"tracking.tracking_uri={uri}", f"work_dir={root}/runs"]]
    subprocess.run([sys.executable, "-m", "flows.cli.main", "train", "anomaly", "--data", str(data), "--config",
                    str(CONFIG), *sets], check=True, capture_output=True, cwd=root)  # fmt: skip
    return uri, "pump7-anomaly/1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tracking-uri")
    parser.add_argument("--model", default="pump7-anomaly/1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        data = make_second_machine(root / "pump7", RECORDS)
        uri, model = (args.tracking_uri, args.model) if args.tracking_uri else train(root, data)
        common = ["score", "anomaly", "--model", model, "--tracking-uri", uri]
        separate, folder = [], []
        for _ in range(args.repeats):
            separate.append(sum(shopfloor(*common, str(path)) for path in sorted(data.iterdir())))
            folder.append(shopfloor(*common, str(data)))
    result = {
        "files": len(RECORDS), "repeats": args.repeats,
        "separate_commands_s": separate, "one_folder_command_s": folder,
        "median_separate_s": statistics.median(separate), "median_folder_s": statistics.median(folder),
        "ratio_of_medians": statistics.median(separate) / statistics.median(folder),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_1min": os.getloadavg()[0], "python": platform.python_version()},
    }  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"| 15 files | median s |\n|---|---|\n| 15 separate commands | {result['median_separate_s']:.1f} |\n"
          f"| one folder command | {result['median_folder_s']:.1f} |\n| ratio | {result['ratio_of_medians']:.1f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
