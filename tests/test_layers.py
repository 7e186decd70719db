"""The library's import graph: stages as layers, no circle (docs/architecture.md, "Layout").

Every ``saesuite`` import of every module is read from its source (``ast``, function-level imports
included, ``TYPE_CHECKING`` ones too: a circle that only type hints close is still a circle for a
reader). Two rules:

* a module imports only its own layer or lower ones, in the order of the pipeline
  (:data:`LAYERS`); the shared top-level modules are the bottom layer, the CLI and the workflow's
  preflight the top;
* the graph of modules has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import saesuite

PACKAGE = Path(saesuite.__file__).parent

# bottom to top; a name is a sub-package of saesuite, or "" for the shared top-level modules
LAYERS = ("", "data", "models", "cache", "sae", "evaluate", "compare", "report", "entry")
ENTRY_POINTS = {"saesuite.cli", "saesuite.__main__", "saesuite.preflight"}


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts).removesuffix(".__init__")] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The saesuite modules ``name`` imports (``from a import b`` counts as ``a.b`` when that is a module)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([package.rsplit(".", node.level - 1)[0], *([node.module] if node.module else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name and m != "saesuite"}


def layer(name: str) -> int:
    if name in ENTRY_POINTS:
        return LAYERS.index("entry")
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else 0


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_every_module_belongs_to_a_layer():
    for name in modules():
        parts = name.split(".")
        if len(parts) > 2:
            assert parts[1] in LAYERS, f"{name}: the package {parts[1]} is not a layer of LAYERS"


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} ({LAYERS[layer(a)] or 'shared'}) imports {b} ({LAYERS[layer(b)] or 'shared'})"
        for a, deps in edges.items() for b in deps if layer(b) > layer(a)
    )


def find_circle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` as a path ``[a, ..., a]``, or None (depth-first search)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        for dep in sorted(edges.get(node, ())):
            if dep in path:
                return path[path.index(dep):] + [dep]
            if dep not in done and (cycle := visit(dep, [*path, dep])):
                return cycle
        done.add(node)
        return None

    for start in sorted(edges):
        if start not in done and (cycle := visit(start, [start])):
            return cycle
    return None


def test_imports_run_down_the_pipeline():
    upward = upward_imports(graph())
    assert not upward, "imports against the flow of data:\n" + "\n".join(upward)


def test_the_import_graph_has_no_circle():
    cycle = find_circle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_checks_fail_on_a_made_up_circle_and_upward_import(tmp_path):
    pkg = tmp_path / "saesuite"
    (pkg / "sae").mkdir(parents=True)
    (pkg / "sae" / "x.py").write_text("from saesuite.report import paper\nfrom . import y\n")
    known = {"saesuite.report.paper", "saesuite.sae.y", "saesuite.sae.x"}
    edges = {"saesuite.sae.x": imports("saesuite.sae.x", pkg / "sae" / "x.py", known),
             "saesuite.sae.y": {"saesuite.errors"}, "saesuite.report.paper": set()}
    assert edges["saesuite.sae.x"] == {"saesuite.report.paper", "saesuite.sae.y"}
    assert upward_imports(edges) == ["saesuite.sae.x (sae) imports saesuite.report.paper (report)"]
    assert find_circle(edges) is None
    edges["saesuite.sae.y"].add("saesuite.sae.x")
    assert find_circle(edges) == ["saesuite.sae.x", "saesuite.sae.y", "saesuite.sae.x"]
    assert layer("saesuite.cli") == len(LAYERS) - 1 and layer("saesuite.errors") == 0
