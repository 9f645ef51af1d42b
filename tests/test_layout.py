"""The architecture as the tree shows it: imports only run down the layers, no cycles, small modules."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# data -> model -> inference -> methods (prompting, training) -> front ends (predict, eval, demo, serve, CLI).
LAYERS = [
    {"lsllm.errors"},
    {"lsllm.files", "lsllm.memory"},
    {"lsllm.data", "lsllm.spans", "lsllm.metrics", "lsllm.writers", "lsllm.report"},
    {"lsllm.config", "lsllm.options"},
    {"lsllm.model"},
    {"lsllm.inference"},
    {"lsllm.prompting"},
    {"lsllm.training"},
    {"lsllm.predict", "lsllm.evaluate"},
    {"lsllm.demo", "lsllm.serve", "lsllm.streaming", "lsllm.ray_predict", "lsllm.tune"},
    {"lsllm.cli"},
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every lsllm module a file imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lsllm"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("lsllm"))
    return names


def _part(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_every_module_has_a_layer():
    assert {_part(m) for m in _modules() if m != "lsllm"} <= set(RANK)


def test_imports_only_run_down_the_layers():
    upward = []
    for module, path in _modules().items():
        if module == "lsllm":  # the package re-exports the public API
            continue
        for target in _imports(path) - {"lsllm"}:  # `from lsllm import __version__`
            if RANK[_part(target)] > RANK[_part(module)]:
                upward.append(f"{module} imports {target}")
    assert not upward


def test_no_import_cycles():
    modules = _modules()
    graph = {m: {t for t in _imports(p) if t in modules and t != "lsllm" and t != m} for m, p in modules.items()
             if m != "lsllm"}
    # A package's __init__ re-exporting its submodules is not a cycle.
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_modules_stay_small():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long
