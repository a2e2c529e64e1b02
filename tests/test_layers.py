"""The package's layers: imports point downwards only, and no module imports
itself back through others (DEVELOPERS.md, "Layout").

Every ``import`` and ``from ... import`` in the package counts, including the
lazy ones inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import napari_histodiff

PKG = Path(napari_histodiff.__file__).parent
NAME = "napari_histodiff"

#: Top to bottom. A module may import from its own layer and the layers below.
LAYERS = [
    # "" is the package's __init__: the public facade (lazy pipeline exports)
    ("hooks", ["_widgets", "cli", "_reader", "_writer", "_sample_data", ""]),
    ("bench", ["bench"]),
    ("distributed", ["distributed"]),
    ("pipelines", ["pipelines"]),
    ("metrics", ["metrics"]),
    ("training", ["training"]),
    ("study", ["study"]),
    ("masks", ["masks"]),
    ("io", ["io"]),
    ("models", ["models"]),
    ("sampling", ["sampling"]),
    ("conditioning", ["conditioning"]),
    ("base", ["errors", "defaults", "settings", "devices", "hashing", "arrays",
              "outputs", "checks", "_version"]),
]
RANK = {part: i for i, (_, parts) in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports() -> dict[str, set[str]]:
    """Every package module and the package modules it imports."""
    mods = {module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    up = package.split(".")
                    base = up[: len(up) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # ``from pkg import mod`` depends on pkg.mod, not on pkg's
                # __init__; ``from pkg.mod import name`` on pkg.mod
                subs = [f"{target}.{a.name}" for a in node.names]
                names = [n for n in subs if n in mods] or [target]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[mod] |= {n for n in names if n in mods and n != mod}
    return graph


def layer_of(mod: str) -> int:
    parts = mod.split(".")
    first = parts[1] if len(parts) > 1 else ""
    if first not in RANK:
        raise AssertionError(f"{mod}: not in any layer of tests/test_layers.py; "
                             "add its wing to LAYERS (and to DEVELOPERS.md)")
    return RANK[first]


def test_every_import_points_down_or_sideways():
    upward = [f"{a} -> {b}" for a, deps in imports().items() for b in deps
              if layer_of(b) < layer_of(a)]
    assert upward == []


def test_no_module_imports_itself_back():
    graph = imports()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    assert cycles == []


def test_layers_import_no_wing_above_through_lazy_imports():
    # the import graph is read, so this test itself could be wrong: check one
    # dependency that must be there
    assert f"{NAME}.models.card" in imports()[f"{NAME}.pipelines.mask_to_image"]
