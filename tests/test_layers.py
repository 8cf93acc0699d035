"""The package's structure: imports run one way. Every module and every first-level part of tinythinker_ray
(a sub-package or a top-level module) imports only parts that do not import it back, directly or round a loop
(imports inside functions count: they are dependencies too). Pure: reads the source with ast."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "tinythinker_ray"


def _imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name imported from a module counts as that module)."""
    modules = {".".join(f.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__"): f
               for f in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
                targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + ".") and t != PKG.name:
                    deps.add(t)
        graph[name] = deps
    return graph


def _part(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_module_imports_round_a_loop():
    try:
        list(TopologicalSorter(_imports()).static_order())
    except CycleError as e:
        raise AssertionError(f"import circle between modules: {' -> '.join(e.args[1])}") from None


def test_no_first_level_part_imports_round_a_loop():
    parts: dict[str, set[str]] = {}
    for module, deps in _imports().items():
        parts.setdefault(_part(module), set()).update(_part(d) for d in deps if _part(d) != _part(module))
    try:
        list(TopologicalSorter(parts).static_order())
    except CycleError as e:
        raise AssertionError(f"import circle between packages: {' -> '.join(e.args[1])}") from None


def test_the_pure_core_imports_nothing_of_the_package_but_itself():
    core = {m: d for m, d in _imports().items() if m.startswith(f"{PKG.name}.core")}
    assert core and all(dep.startswith(f"{PKG.name}.core") for deps in core.values() for dep in deps), core
