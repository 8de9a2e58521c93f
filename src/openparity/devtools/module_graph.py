"""The package's import graph, read from the source (nothing is imported): every module, every
import of another openparity module (at the top or inside a function), the cycles among
modules, and the imports that break the layer order. `python -m openparity.devtools.module_graph`
prints the counts; the layer test (tests/test_layers.py) holds the code to the order below.

An import inside a function is still a dependency: deferring it hides a cycle from Python but
not from a reader, so the graph counts both kinds alike.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "openparity"
SOURCE = Path(__file__).resolve().parents[1]

# Lower layers first; a module may import its own package, anything in a lower layer and the
# shared modules; packages in one layer do not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("models",),  # model backends: local llama.cpp, hf, OpenAI-compatible
    ("bench",),  # measure: tasks, scoring, the sandbox, statistics, reports
    ("data",),  # close: synthetic data, cleaning, decontamination
    ("route", "sparse", "align"),  # route: the gateway; close: sparse masks, TRL training
    ("moe", "federated"),  # close: the small LM (sparse training its option); federated TRL
    ("forecast",),  # decide
    ("doctor",),
    ("cli", "testing", "devtools"),  # testing: stub servers and simulations for tests
)
# top-level helper modules every package may use (they import no package above them)
SHARED = (
    "atomic",
    "cachedir",
    "console",
    "cpus",
    "errors",
    "htmlpage",
    "jsonsafe",
    "lazy_exports",
    "redact",
    "settings_cli",
    "textsignals",
    "usercode",
    "yamlfile",
    "__init__",
)


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, dotted, without the package prefix ("bench.comparison")
    target: str
    line: int
    in_function: bool


@dataclass
class Graph:
    modules: list[str]
    edges: list[Edge] = field(default_factory=list)

    def cycles(self) -> list[list[str]]:
        """Strongly connected groups of more than one module (and modules importing
        themselves), each sorted."""
        targets: dict[str, set[str]] = {m: set() for m in self.modules}
        for e in self.edges:
            targets.setdefault(e.source, set()).add(e.target)
        return [sorted(c) for c in _strongly_connected(targets) if len(c) > 1]

    def layer_breaks(self) -> list[Edge]:
        return [e for e in self.edges if not allowed(e.source, e.target)]

    def counts(self) -> dict[str, int]:
        top = [e for e in self.edges if not e.in_function]
        return {
            "modules": len(self.modules),
            "imports": len(self.edges),
            "imports_inside_functions": len(self.edges) - len(top),
            "cycles": len(self.cycles()),
            "layer_breaks": len(self.layer_breaks()),
        }


def package_of(module: str) -> str:
    return module.split(".")[0]


def layer_of(package: str) -> int | None:
    return next((i for i, layer in enumerate(LAYERS) if package in layer), None)


def allowed(source: str, target: str) -> bool:
    """May `source` import `target` under the layer order?"""
    a, b = package_of(source), package_of(target)
    if a == b or b in SHARED:
        return True
    if a in SHARED:  # a shared helper imports only other shared helpers
        return False
    la, lb = layer_of(a), layer_of(b)
    if la is None or lb is None:
        return False  # a package missing from LAYERS is placed before it may be imported
    return lb < la


def build(source: Path = SOURCE) -> Graph:
    files = sorted(p for p in source.rglob("*.py") if "__pycache__" not in p.parts)
    names = {_module_name(source, p): p for p in files}
    graph = Graph(sorted(names))
    for name, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, in_function in _imports(tree):
            for target in dict.fromkeys(_targets(node, name, is_package, names)):
                if target != name:
                    graph.edges.append(Edge(name, target, node.lineno, in_function))
    return graph


def _module_name(source: Path, path: Path) -> str:
    parts = list(path.relative_to(source).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, and whether it sits inside a function. Imports under
    `if TYPE_CHECKING:` are annotations only and are left out."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.AST, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            yield from walk(child, inner)

    yield from walk(tree, False)  # type: ignore[misc]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(
    node: ast.Import | ast.ImportFrom, name: str, is_package: bool, known: dict[str, Path]
) -> list[str]:
    """The openparity modules an import statement loads (a `from X import y` names the
    module X.y when there is one, else X)."""
    if isinstance(node, ast.Import):
        dotted = [a.name for a in node.names]
        return [t for d in dotted if (t := _within(d, known))]
    base = node.module or ""
    if node.level:  # relative: from the importing module's package
        package = name.split(".") if is_package else name.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([PACKAGE, *package, *([base] if base else [])])
    found = []
    for alias in node.names:
        module = _within(f"{base}.{alias.name}", known) or _within(base, known)
        if module:
            found.append(module)
    return found


def _within(dotted: str, known: dict[str, Path]) -> str | None:
    if dotted != PACKAGE and not dotted.startswith(PACKAGE + "."):
        return None
    inner = dotted[len(PACKAGE) + 1 :] or "__init__"
    while inner and inner not in known:  # `from openparity.x import name`: the module x
        inner = inner.rpartition(".")[0]
    return inner or None


def _strongly_connected(targets: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph is small, recursion limits are not)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(targets):
        if root in index:
            continue
        work = [(root, iter(sorted(targets.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(targets.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="Print the counts and lists as JSON.")
    args = parser.parse_args(argv)
    graph = build()
    report = {
        **graph.counts(),
        "cycle_members": graph.cycles(),
        "layer_breaks_list": [f"{e.source}:{e.line} -> {e.target}" for e in graph.layer_breaks()],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for key, value in graph.counts().items():
        print(f"{key}: {value}")
    for group in report["cycle_members"]:
        print("cycle: " + " <-> ".join(group))
    for line in report["layer_breaks_list"]:
        print("layer break: " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
