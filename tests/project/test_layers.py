"""The package layers of src/imagetrail (docs/architecture.md), read from the source with ``ast``.

Every import counts, including those inside functions and under ``if TYPE_CHECKING``: a lazy
import is still a dependency. Failure messages name the importing module, its line and the import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Set, Tuple

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = SRC / "imagetrail"

# Layer names: "top" is every top-level module (stdlib-only helpers); "entry" the console entry
# points (imagetrail.cli, imagetrail.__main__); every other name is a subpackage.
TOP = "top"
ENTRY = "entry"
TOP_MODULES = frozenset({"report", "reference", "facts", "sanitize", "bounded_read", "settings", "json_input",
                         "severity", "gc_pause", "__init__"})
ENTRY_MODULES = frozenset({"cli", "__main__"})
ANYTHING = frozenset({"*"})

# Which layers each layer may import (besides itself), lowest first.
ALLOWED: Dict[str, FrozenSet[str]] = {
    TOP: frozenset(),
    "collector": frozenset({TOP}),
    "store": frozenset({TOP}),
    "parsers": frozenset({TOP}),
    "views": frozenset({TOP}),
    "remote": frozenset({TOP, "parsers"}),
    "auth": frozenset({TOP, "store"}),
    "ingest": frozenset({TOP, "store", "auth", "parsers"}),
    "queries": frozenset({TOP, "store", "auth", "parsers", "views"}),
    "services": frozenset({TOP, "store", "auth", "parsers", "remote", "ingest", "queries", "views"}),
    "api": frozenset({TOP, "store", "auth", "parsers", "ingest", "queries", "services", "views"}),
    "web": frozenset({TOP, "store", "auth", "parsers", "ingest", "queries", "services", "views"}),
    "client": frozenset({TOP, "parsers", "remote", "views"}),
    "demo": frozenset({TOP, "store", "auth", "parsers", "ingest"}),
    "server": ANYTHING,
    ENTRY: ANYTHING,
}
# Of the store, these layers may use the sessions (imagetrail.store.db) and, for /readyz, the schema
# revision (imagetrail.store.migrate) only.
STORE_DB_ONLY = frozenset({"api", "web"})
STORE_FOR_APPS = frozenset({"imagetrail.store.db", "imagetrail.store.migrate"})
# Only queries and ingest read and write tables.
NO_MODELS = frozenset({"api", "web", "services", "client", "demo", "server"})
MODELS = "imagetrail.store.models"
# The collector runs on build agents with its own small dependency set: of the rest of imagetrail
# it may use only these top-level modules (and the package's __version__).
COLLECTOR_MAY_IMPORT = frozenset({"imagetrail", "imagetrail.report", "imagetrail.reference"})

# Imports that break a rule today and are being removed on other branches (issue 11). Each entry is
# (importing module, imported module); test_known_exceptions_are_still_needed fails when one is gone,
# so this set only shrinks. It is empty: every rule holds.
KNOWN_EXCEPTIONS: FrozenSet[Tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    line: int
    target: str  # the imported module, dotted (a name imported from a module resolves to that module)

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.target}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str, root: Path) -> bool:
    base = root.parent.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(source: str, module: str, is_package: bool, root: Path = ROOT) -> List[Import]:
    """Every import of an imagetrail module in ``source``, wherever it appears."""
    found: List[Import] = []
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(module, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                # ``from imagetrail.store import models`` imports the module imagetrail.store.models;
                # ``from imagetrail import __version__`` imports a name of the package imagetrail.
                candidate = f"{base}.{alias.name}"
                found.append(Import(module, node.lineno, candidate if _is_module(candidate, root) else base))
    ours = [i for i in found if i.target == "imagetrail" or i.target.startswith("imagetrail.")]
    return list(dict.fromkeys(ours))  # ``from m import a, b`` is one import of m


def layer(dotted: str) -> str:
    parts = dotted.split(".")
    name = parts[1] if len(parts) > 1 else "__init__"
    if len(parts) <= 2 and name in ENTRY_MODULES:
        return ENTRY
    if len(parts) <= 2 and (name in TOP_MODULES or not (ROOT / name).is_dir()):
        return TOP
    return name


def all_imports(root: Path = ROOT) -> List[Import]:
    found: List[Import] = []
    for path in sorted(root.rglob("*.py")):
        found += imports_of(path.read_text(encoding="utf-8"), module_name(path, root), path.name == "__init__.py",
                            root)
    return found


def layer_violations(imports: Iterable[Import]) -> List[Tuple[Import, str]]:
    """(import, the rule it breaks) for every import the layer rules refuse."""
    problems: List[Tuple[Import, str]] = []
    for imp in imports:
        source, target = layer(imp.module), layer(imp.target)
        if source not in ALLOWED:
            problems.append((imp, f"the layer {source!r} is not in the ALLOWED table"))
            continue
        if source != target and ALLOWED[source] != ANYTHING and target not in ALLOWED[source]:
            problems.append((imp, f"{source} may import only {sorted(ALLOWED[source])}"))
        if source in STORE_DB_ONLY and target == "store" and imp.target not in STORE_FOR_APPS \
                and not imp.target.startswith(MODELS):
            problems.append((imp, f"{source} may use imagetrail.store.db only"))
        if source in NO_MODELS and (imp.target == MODELS or imp.target.startswith(MODELS + ".")):
            problems.append((imp, f"{source} must not import {MODELS} (only queries and ingest read tables)"))
        if source == "collector" and target != "collector" and imp.target not in COLLECTOR_MAY_IMPORT:
            problems.append((imp, f"the collector may import only {sorted(COLLECTOR_MAY_IMPORT)}"))
    return problems


def package_cycles(imports: Iterable[Import]) -> List[List[str]]:
    """Groups of layers that import each other, directly or through others (strongly connected)."""
    graph: Dict[str, Set[str]] = {}
    for imp in imports:
        source, target = layer(imp.module), layer(imp.target)
        graph.setdefault(source, set())
        graph.setdefault(target, set())
        if source != target:
            graph[source].add(target)
    # Tarjan's algorithm; the graph has about fifteen nodes, recursion depth is no concern.
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    groups: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _report(problems: List[Tuple[Import, str]]) -> str:
    return "\n".join(f"{imp}: {rule}" for imp, rule in problems)


@pytest.fixture(scope="module")
def imports() -> List[Import]:
    found = all_imports()
    assert len({i.module for i in found}) > 100, "the source tree was not found or not parsed"
    return found


def test_every_package_has_a_place_in_the_layer_table():
    packages = {path.name for path in ROOT.iterdir() if (path / "__init__.py").is_file()}
    assert packages - set(ALLOWED) == set(), "add the new package to ALLOWED (and docs/architecture.md)"


def test_imports_follow_the_layer_table(imports):
    problems = [(imp, rule) for imp, rule in layer_violations(imports)
                if (imp.module, imp.target) not in KNOWN_EXCEPTIONS]
    assert not problems, "imports that break the layers (docs/architecture.md):\n" + _report(problems)


def test_no_two_packages_import_each_other(imports):
    assert package_cycles(imports) == []


def test_known_exceptions_are_still_needed(imports):
    """An exception nobody needs any more would let the import come back unnoticed: remove it."""
    broken = {(imp.module, imp.target) for imp, _ in layer_violations(imports)}
    assert KNOWN_EXCEPTIONS - broken == set()


# -- the checker itself, on sources written here -------------------------------------------------------
def _violations(module: str, source: str, is_package: bool = False) -> List[str]:
    return [rule for _, rule in layer_violations(imports_of(source, module, is_package))]


def test_a_lazy_import_inside_a_function_is_found():
    source = "def f():\n    if True:\n        from imagetrail.services.remediation import plan\n"
    (found,) = imports_of(source, "imagetrail.client.query", False)
    assert (found.line, found.target) == (3, "imagetrail.services.remediation")
    assert _violations("imagetrail.client.query", source) == [
        "client may import only ['parsers', 'remote', 'top', 'views']"]


def test_relative_and_from_package_imports_resolve_to_modules():
    found = imports_of("from ..store import models\nfrom . import cloud\nfrom imagetrail import __version__\n",
                       "imagetrail.api.trace", False)
    assert [i.target for i in found] == ["imagetrail.store.models", "imagetrail.api.cloud", "imagetrail"]
    assert [i.target for i in imports_of("from .context import github\n", "imagetrail.collector", True)] == [
        "imagetrail.collector.context.github"]


def test_each_rule_refuses_what_it_should():
    assert _violations("imagetrail.web.lookup", "from imagetrail.store.models.cloud import Cluster") == [
        "web must not import imagetrail.store.models (only queries and ingest read tables)"]
    assert _violations("imagetrail.api.health", "from imagetrail.store.bulk import insert") == [
        "api may use imagetrail.store.db only"]
    assert _violations("imagetrail.collector.send", "import imagetrail.facts") == [
        "the collector may import only ['imagetrail', 'imagetrail.reference', 'imagetrail.report']"]
    assert _violations("imagetrail.report", "from imagetrail.store.db import transaction") == [
        "top may import only []"]
    assert _violations("imagetrail.queries.trail", "from imagetrail.store.models import Push") == []
    assert _violations("imagetrail.server.app", "from imagetrail.web.routes import router") == []


def test_a_cycle_between_packages_is_found():
    cycle = [Import("imagetrail.auth.tokens", 1, "imagetrail.ingest.writer"),
             Import("imagetrail.ingest.writer", 1, "imagetrail.queries.trail"),
             Import("imagetrail.queries.trail", 1, "imagetrail.auth"),
             Import("imagetrail.api.trace", 1, "imagetrail.auth")]
    assert package_cycles(cycle) == [["auth", "ingest", "queries"]]
