"""Imports run one way (../shared/DESIGN.md): no cycle between hpcgan modules, no CLI in the launch layer,
and no module importing a higher layer. Every module is parsed with ``ast`` (module-level and
function-level imports, relative ones resolved); nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hpcgan"

# DESIGN.md's order, top to bottom: cli -> launch, bench -> experiment -> gan, classify -> metrics -> data, ops,
# dist -> _C. The shared utilities (config, errors, ...) and dist sit at the bottom with _C; doctor reports on
# the native extension through hpcgan.ops, so it sits with ops; cliflags (flags generated from the configs) is
# part of the CLI: no stage parses a flag.
LAYERS = {
    "cli": 6, "__main__": 6, "cliflags": 6,
    "launch": 5, "bench": 5,
    "experiment": 4,
    "gan": 3, "classify": 3,
    "metrics": 2,
    "data": 1, "ops": 1, "doctor": 1,
    "": 0, "config": 0, "errors": 0, "atomic": 0, "progress": 0, "build_info": 0, "dist": 0, "_C": 0,
}


def module_names(root: Path) -> dict[str, Path]:
    """{dotted module name: file} of the package at ``root`` (its folder name is the package name)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _owner(name: str, known: set[str]) -> str | None:
    """The module of ``known`` that ``name`` (a module or an attribute of one) lives in: its longest prefix."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in known:
            return cand
    return None


def _imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):  # every import, at module level or inside a function
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            names = [f"{base_name}.{a.name}" for a in node.names] + [base_name]
            # `from pkg import name`: the submodule pkg.name when there is one, else pkg itself
            names = [n for n in names[:-1] if n in known] or [base_name]
        else:
            continue
        for n in names:
            owner = _owner(n, known)
            if owner is not None and owner != module:
                targets.add(owner)
    return targets


def import_graph(root: Path) -> dict[str, set[str]]:
    """{module: the package's modules it imports} for the package at ``root``."""
    mods = module_names(root)
    known = set(mods)
    return {m: _imports_of(m, p, known) for m, p in mods.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, the first repeated at the end) per strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(graph, g) for g in groups]


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A concrete cycle through the smallest module of ``group`` (breadth-first: a shortest one)."""
    start = min(group)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in {group}")


def layer_of(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else ""
    return LAYERS[key]


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
            for m, targets in sorted(graph.items()) for t in sorted(targets) if layer_of(t) > layer_of(m)]


# -- the checker can fail --------------------------------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_finds_a_cycle_through_a_function_level_relative_import(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg.sub import b\n",
        "sub/__init__.py": "",
        "sub/b.py": "import os\n\n\ndef f():\n    from .c import g\n    return g\n",
        "sub/c.py": "def g():\n    from .. import a\n    return a\n",
        "d.py": "from pkg import a\n",
    })
    graph = import_graph(root)
    assert graph["pkg.sub.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"} and graph["pkg.d"] == {"pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]]


def test_checker_without_a_cycle_and_a_layer_violation():
    graph = {"hpcgan.data.shards": {"hpcgan.errors"}, "hpcgan.gan.train": {"hpcgan.data.shards"},
             "hpcgan.errors": set()}
    assert find_cycles(graph) == []
    assert layer_violations(graph) == []
    graph["hpcgan.data.shards"].add("hpcgan.gan.train")
    assert find_cycles(graph) == [["hpcgan.data.shards", "hpcgan.gan.train", "hpcgan.data.shards"]]
    assert layer_violations(graph) == ["hpcgan.data.shards (layer 1) imports hpcgan.gan.train (layer 3)"]


# -- hpcgan itself ---------------------------------------------------------------------------------


def test_no_import_cycle_in_hpcgan():
    cycles = find_cycles(import_graph(PACKAGE))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_launch_layer_imports_no_cli():
    graph = import_graph(PACKAGE)
    launch = {m: t for m, t in graph.items() if m == "hpcgan.launch" or m.startswith("hpcgan.launch.")}
    assert launch, "no hpcgan.launch modules found"
    bad = sorted(m for m, t in launch.items() if "hpcgan.cli" in t)
    assert not bad, f"{bad} import hpcgan.cli"


def test_no_module_imports_a_higher_layer():
    graph = import_graph(PACKAGE)
    unknown = sorted(m for m in graph if m.split(".")[1:2] and m.split(".")[1] not in LAYERS)
    assert not unknown, f"modules outside every layer of DESIGN.md (add them to LAYERS): {unknown}"
    bad = layer_violations(graph)
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)
