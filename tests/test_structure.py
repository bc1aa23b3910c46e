"""The import graph: every import points down the lifecycle, with no cycles and no private names across modules.

Counted: every ``import``/``from ... import`` of a ``palaestra`` module anywhere in a file, inside functions
too (they run as soon as the function does) and under ``if TYPE_CHECKING:`` (a type a module names is a
dependency all the same).
Allowed: the command line and its command modules register with each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "palaestra"

# Lower layers never import higher ones (DESIGN.md: data <- models <- training <- evaluation <- tuning/deployment
# <- CLI; config, errors, artifacts and the hook names sit below everything; the run directory above evaluation).
LAYERS = [
    {"palaestra.errors", "palaestra.hooks", "palaestra.formatting"},
    {"palaestra.config", "palaestra.artifacts", "palaestra.pretrained"},
    {"palaestra.data"},
    {"palaestra.models"},
    {"palaestra.training", "palaestra.resources"},
    {"palaestra.evaluation"},
    {"palaestra.runs", "palaestra.runs_view", "palaestra.index", "palaestra.rundir"},
    {"palaestra.diagnosis", "palaestra.pipeline"},
    {"palaestra.tuning", "palaestra.deployment", "palaestra.generative", "palaestra.estimators"},
    {"palaestra.cli", "palaestra.distributed", "palaestra", "palaestra.__main__"},
]
CLI_GROUP = ("palaestra.cli", "palaestra.distributed")  # with every */commands.py module


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    is_package = MODULES[module].name == "__init__.py"
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _target(name: str) -> str | None:
    """The palaestra module an imported dotted name lives in (a module, or a name inside one)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports() -> list[tuple[str, str, str, int]]:
    """(importer, imported module, imported name or '', line) for every palaestra import."""
    found = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("palaestra"):
                        found.append((module, _target(alias.name), "", node.lineno))
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module, node)
                if not source.startswith("palaestra"):
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    target = sub if sub in MODULES else _target(source)
                    found.append((module, target, "" if sub in MODULES else alias.name, node.lineno))
    return [f for f in found if f[1] is not None and f[1] != f[0]]


def _layer(module: str) -> int:
    best = None
    for i, group in enumerate(LAYERS):
        for prefix in group:
            if module == prefix or (prefix != "palaestra" and module.startswith(prefix + ".")):
                if best is None or len(prefix) > len(best[1]):
                    best = (i, prefix)
    assert best is not None, f"{module} is in no layer of tests/test_structure.py"
    return best[0]


def _cli_side(module: str) -> bool:
    return module in CLI_GROUP or module.endswith(".commands")


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_imports_point_down_the_lifecycle():
    upward = [f"{a} -> {b} (line {line})" for a, b, _, line in imports()
              if _layer(b) > _layer(a) and not (_cli_side(a) and _cli_side(b))]
    assert not upward, "imports that point up the lifecycle:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for a, b, _, _ in imports():
        if not (_cli_side(a) and _cli_side(b)):
            graph[a].add(b)
    # Tarjan's strongly connected components: a component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_names_imported_across_modules():
    private = [f"{a} imports {b}.{name} (line {line})" for a, b, name, line in imports()
               if name.startswith("_") and not name.startswith("__")]
    assert not private, "\n".join(private)


@pytest.mark.parametrize("package", ["data", "models"])
def test_data_and_models_never_import_later_stages(package):
    later = ("palaestra.training", "palaestra.evaluation", "palaestra.tuning", "palaestra.deployment",
             "palaestra.generative", "palaestra.runs", "palaestra.pipeline")
    bad = [f"{a} -> {b}" for a, b, _, _ in imports() if a.startswith(f"palaestra.{package}") and b.startswith(later)]
    assert not bad, bad
