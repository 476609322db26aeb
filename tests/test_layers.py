"""The package's layer rule, read from the modules' imports (parsed with ast, so imports
inside functions and under TYPE_CHECKING count too): no module imports a higher layer, and
the module import graph has no cycle.

Layers, bottom to top: kernels, matrices, data -> polar -> norms -> distributed -> optim ->
groups -> diagnostics -> experiments (steepest/__init__.py, the top, may import anything).
Inside optim, the engine does not depend on the members: no module of steepest.optim outside
steepest.optim.family imports a member (only steepest/optim/__init__.py, which lists them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import steepest

ROOT = Path(steepest.__file__).parent
LAYERS = {
    "kernels": 0,
    "matrices": 0,
    "data": 0,
    "polar": 1,
    "norms": 2,
    "distributed": 3,
    "optim": 4,
    "groups": 5,
    "diagnostics": 6,
    "experiments": 7,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The steepest modules a file imports (relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("steepest"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("steepest"):
                continue
            for alias in node.names:  # "from pkg import module" names a module too
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
    return found


def _exists(module: str) -> bool:
    path = ROOT.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


GRAPH = {_module_name(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def test_every_subpackage_has_a_layer():
    tops = {m.split(".")[1] for m in GRAPH if m.count(".") >= 1}
    assert tops <= set(LAYERS), sorted(tops - set(LAYERS))


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _layer(module) is not None
        and _layer(target) is not None
        and _layer(target) > _layer(module)  # type: ignore[operator]
    ]
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_the_kernels_import_nothing_from_the_package():
    inward = [
        f"{m} -> {t}"
        for m, ts in GRAPH.items()
        if m.startswith("steepest.kernels")
        for t in ts
        if not t.startswith("steepest.kernels")
    ]
    assert not inward, inward


def _is_member(module: str) -> bool:
    return module.startswith("steepest.optim.family")


def test_the_engine_imports_no_member():
    core = [m for m in GRAPH if m.startswith("steepest.optim.") and not _is_member(m)]
    assert "steepest.optim.engine" in core and "steepest.optim.registry" in core
    inward = [
        f"{m} -> {t}" for m in core for t in GRAPH[m] if _is_member(t) or t == "steepest.optim"
    ]
    assert not inward, "the engine imports the members:\n" + "\n".join(sorted(inward))


def test_every_member_module_is_listed_in_the_family():
    members = {m for m in GRAPH if _is_member(m) and m != "steepest.optim.family"}
    assert len(members) >= 18
    listed = GRAPH["steepest.optim.family"]
    assert members <= listed, sorted(members - listed)


def test_the_module_import_graph_has_no_cycle():
    """Depth-first search over module -> imported module (packages' __init__ files count
    as modules: a cycle through one is a cycle)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH.get(module, ())):
            if target == module or target not in GRAPH:
                continue
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if state.get(target) is None:
                visit(target)
        path.pop()
        state[module] = 2

    for module in GRAPH:
        if state.get(module) is None:
            visit(module)


def test_the_checker_sees_an_upward_edge(tmp_path):
    """The oracle itself: a file importing a higher layer is reported."""
    bad = tmp_path / "steepest" / "polar" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from steepest.optim import engine\nfrom . import msign\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path / "steepest"
    try:
        found = _imports(bad)
    finally:
        ROOT = saved
    assert "steepest.optim" in found or "steepest.optim.engine" in found
    assert _layer("steepest.optim.engine") > _layer("steepest.polar.bad")  # type: ignore[operator]
