"""The one way shopfloor opens an ONNX file: CPU provider, fixed thread counts, quiet logs.

Benchmarks, export gates and edge devices all time models; they must run them the same way.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def session(path: Path, threads: int = 2, exact_int8: bool = False) -> ort.InferenceSession:
    """`exact_int8`: ONNX Runtime's slower u8 x u8 integer kernels on x86 CPUs without VNNI, whose
    sums cannot saturate; used to check that the fast u8 x s8 kernels give the same answers."""
    options = ort.SessionOptions()
    if exact_int8:
        options.add_session_config_entry("session.x64quantprecision", "1")
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
