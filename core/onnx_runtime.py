"""The one way shopfloor opens and runs an ONNX file: CPU provider, fixed thread counts, quiet logs.

Benchmarks, export gates and edge devices all time and run models; they must run them the same way.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort

# CPU flags that give int8 dot products with 32-bit sums (x86 VNNI, ARM dot product). Without one,
# x86 int8 kernels add pairs of u8 x s8 products in int16: slower, and able to saturate.
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "asimddp")


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


def run_batched(sess: ort.InferenceSession, inputs: np.ndarray, batch: int = 32) -> np.ndarray:
    """The model's first output for float32 `inputs` (N, ...) fed in batches along axis 0: (N, ...)."""
    name, output = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    if len(inputs) == 0:
        shape = [d if isinstance(d, int) else 0 for d in sess.get_outputs()[0].shape[1:]]
        return np.empty((0, *shape), np.float32)
    return np.concatenate(
        [sess.run([output], {name: inputs[i : i + batch]})[0] for i in range(0, len(inputs), batch)]
    )


def cpu_facts(cpuinfo: str | None = None) -> dict:
    """Which CPU a latency or int8 figure was measured on: the same int8 file runs about 1.4x faster
    than fp32 on an AVX2 CPU and about 2.3x on one with AVX-512 VNNI (RESULTS.md), so a figure
    without its CPU cannot be compared. `cpuinfo`: the text of /proc/cpuinfo (read when None)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}  # the first processor's entry
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {
        "cpu": fields.get("model name") or platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "int8_dot_product": next((f for f in INT8_DOT_PRODUCT_FLAGS if f in flags), "none"),
    }
