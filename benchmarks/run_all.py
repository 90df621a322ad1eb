"""Run every speed and quality benchmark in turn (what `make bench` does); results land in
benchmarks/results/ and RESULTS.md summarises them.

The ONNX and edge benchmarks need a trained model: run `make demo` first. The defect protocols
(5-fold CV, lighting shift) train many models and take hours on a 2-core CPU, so they are listed
in RESULTS.md with their commands instead of run here.
"""

from __future__ import annotations

import subprocess
import sys

STEPS = [
    "benchmarks.data_checks_bench",
    "benchmarks.linear_probe",
    "benchmarks.train_throughput",
    "benchmarks.onnx_speed",
    "benchmarks.edge_load",
    "benchmarks.anomaly_features",
    "benchmarks.anomaly_protocol",
]


def main() -> None:
    failed = []
    for step in STEPS:
        print(f"== {step}", flush=True)
        if subprocess.call([sys.executable, "-m", step]) != 0:
            failed.append(step)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
