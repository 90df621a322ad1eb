"""The one way shopfloor opens an ONNX file: CPU provider, fixed thread counts, quiet logs.

Benchmarks, export gates and edge devices all time models; they must run them the same way.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def session(path: Path, threads: int = 2) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
