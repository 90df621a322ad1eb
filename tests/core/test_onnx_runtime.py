"""Int8 speed depends on the CPU's integer dot-product instructions: every figure names its CPU."""

from __future__ import annotations

from core.onnx_runtime import cpu_facts

AVX2_ONLY = """processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse2 avx avx2 fma
processor\t: 1
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse2 avx avx2 fma avx512_vnni
"""
VNNI = "model name\t: AMD EPYC 9B14\nflags\t\t: avx2 avx512f avx512bw avx512_vnni avx512_bf16\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd aes crc32 atomics asimddp\n"


def test_cpu_facts_name_the_int8_dot_product_instructions():
    assert cpu_facts(AVX2_ONLY)["int8_dot_product"] == "none"  # the first processor's flags count
    assert cpu_facts(AVX2_ONLY)["cpu"] == "AMD EPYC 7B12"
    assert cpu_facts(VNNI)["int8_dot_product"] == "avx512_vnni"
    assert cpu_facts(ARM)["int8_dot_product"] == "asimddp"
    assert cpu_facts(ARM)["cpu"]  # no model name line: falls back to the platform's name
