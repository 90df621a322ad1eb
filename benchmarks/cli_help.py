"""How long `shopfloor <command> --help` takes: the heavy parts must load only when a command runs.

  python -m benchmarks.cli_help [--repeats 5]

Every command's `--help` in a fresh interpreter (as a user types it), median of `repeats`, against the
bare interpreter start (`python -c pass`) measured in the same loop. Bar (issue 25): under 1 s each.
Writes benchmarks/results/cli_help.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _commands() -> list[list[str]]:
    """Every command and sub-command of the CLI, from its Click tree."""
    import typer.main

    from flows.cli.main import app

    found, stack = [], [([], typer.main.get_command(app))]
    while stack:
        path, command = stack.pop()
        found.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            stack.append(([*path, name], sub))
    return sorted(found)


def _seconds(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    commands = _commands()
    times: dict[str, list[float]] = {" ".join(c) or "(root)": [] for c in commands}
    baseline = []
    for _ in range(args.repeats):
        baseline.append(_seconds([sys.executable, "-c", "pass"]))
        for command in commands:
            times[" ".join(command) or "(root)"].append(
                _seconds([sys.executable, "-m", "flows.cli.main", *command, "--help"])
            )
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = statistics.median(baseline)
    slowest = max(medians, key=medians.get)
    result = {
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "repeats": args.repeats,
        "python_start_s": base, "help_s": medians, "slowest": [slowest, medians[slowest]],
        "slowest_over_python_start": medians[slowest] / base, "all_under_1_s": max(medians.values()) < 1.0,
    }  # fmt: skip
    (REPO / "benchmarks" / "results" / "cli_help.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "help_s"}, indent=2))


if __name__ == "__main__":
    main()
