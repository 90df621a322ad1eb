"""The package layout holds: layers import only earlier layers, no import cycles, the two kinds of data
stay apart, and functions stay short enough to read in one pass.

Layers, in the order data flows (README "Layout"); `edge` (server) and `device` (client) are two
sides of one layer and never import each other. Every import counts, including the ones inside
functions that keep the CLI light: a lazy import of a later layer is still a reversed dependency.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.fixtures.data import REPO

LAYERS = [
    "core",
    "inputs",
    "data_checks",
    "training",
    "export",
    "registry",
    "edge",
    "device",
    "monitor",
    "stack",
    "flows",
]
RANK = {name: i for i, name in enumerate(LAYERS)} | {"device": LAYERS.index("edge")}
MAX_FUNCTION_LINES = 55


def modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def imported(path: Path, module: str, known: set[str]) -> set[str]:
    """Project modules `path` imports anywhere in the file (absolute imports only, as the project writes them)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(path, name, set(found)) for name, path in found.items()}


def test_every_layer_imports_only_earlier_layers():
    reversed_ = []
    for module, targets in graph().items():
        layer = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if RANK[other] > RANK[layer] or {layer, other} == {"edge", "device"}:
                reversed_.append(f"{module} -> {target}")
    assert not reversed_, "imports against the flow of data:\n" + "\n".join(sorted(reversed_))


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state[target] == 1:
                cycles.append(" -> ".join(stack[stack.index(target) :] + [node, target]))
            elif state[target] == 0:
                visit(target, stack + [node])
        state[node] = 2

    for node in sorted(edges):
        if state[node] == 0:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_images_and_vibration_stay_apart():
    """Inside a layer the two kinds of data are side by side, not tangled: only flows/ composes both."""
    mixed = []
    for module, targets in graph().items():
        if module.startswith("flows."):
            continue
        kinds = {"images", "vibration"} & set(module.split("."))
        for target in targets:
            other = {"images", "vibration"} & set(target.split("."))
            if kinds and other and kinds != other:
                mixed.append(f"{module} -> {target}")
    assert not mixed, "\n".join(mixed)


def test_functions_are_short_enough_to_read_in_one_pass():
    long = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, "split these by meaning:\n" + "\n".join(long)


def test_a_folder_named_like_a_package_in_the_working_directory_does_not_shadow_it(tmp_path):
    """Finding: `shopfloor monitor serve` run from a folder holding the edge state as `edge/` (with its
    `samples/`) failed with "cannot import name 'SampleStore' from 'edge.samples' (unknown location)":
    Prefect puts the working directory first on sys.path, and with setuptools' default editable finder
    a plain folder there became the `edge` package. The install puts the checkout on sys.path instead."""
    import subprocess
    import sys

    for name in ("edge/samples", "monitor", "device", "core"):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
    code = "import sys; sys.path.insert(0, ''); import edge.samples, monitor.store, device.agent, core.card; print(edge.samples.__file__)"
    found = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.strip() == str(REPO / "edge" / "samples.py"), found.stderr[
        -500:
    ]
