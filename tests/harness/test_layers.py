"""The import rule of README's *Layout and the import rule*: no circle, no import down the layer table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx
import pytest

from tests.paths import ROOT

REPO = ROOT
ROOTS = {"audiobench": REPO / "audiobench", "audiobench.methods": REPO / "methods", "audiobench.metrics": REPO / "metrics"}


def layer_table() -> list[tuple[str, list[str]]]:
    """(layer, module prefixes) in README order, top (lowest) first."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Layout and the import rule", 1)[1]
    rows = []
    for line in section.splitlines():
        m = re.match(r"\|\s*(\w+)\s*\|(.*?)\|", line)
        if m and m.group(1) not in ("layer",) and "`" in m.group(2):
            rows.append((m.group(1), re.findall(r"`([\w.]+)`", m.group(2))))
    return rows


def modules() -> dict[str, Path]:
    out = {}
    for pkg, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = path
    return out


def import_graph() -> nx.DiGraph:
    """Module -> every audiobench module it imports (package ``__init__`` files included)."""
    mods = modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(mods)
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("audiobench"):
                    graph.add_edge(name, t)
    return graph


def layer_of(module: str, table: list[tuple[str, list[str]]]) -> int:
    best = (-1, -1)
    for i, (_, prefixes) in enumerate(table):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best[1]:
                best = (i, len(p))
    if best[0] < 0:
        raise AssertionError(f"{module} is in no layer of README's table: add its folder to a row")
    return best[0]


def test_the_table_names_every_layer_once():
    table = layer_table()
    assert [name for name, _ in table] == ["kernel", "contracts", "components", "suite", "store", "views", "harness", "doors"]


def test_no_import_circle():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, "import circles: " + "; ".join(" -> ".join([*c, c[0]]) for c in cycles[:5])


def test_no_import_goes_down_the_layer_table():
    table = layer_table()
    graph = import_graph()
    wrong = [f"{a} ({table[layer_of(a, table)][0]}) imports {b} ({table[layer_of(b, table)][0]})"
             for a, b in graph.edges if layer_of(b, table) > layer_of(a, table)]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("bad", [("audiobench.kernel.cache", "audiobench.harness.session")])
def test_the_rule_catches_an_upward_import(bad):
    """The check itself: an edge from the kernel to the harness is a violation."""
    table = layer_table()
    a, b = bad
    assert layer_of(b, table) > layer_of(a, table)


def test_library_modules_stay_small():
    """No library module over 400 lines (the redesign's limit), apart from the listed ones (none left)."""
    allowed: set[str] = set()
    long = [str(p.relative_to(REPO)) for p in modules().values()
            if len(p.read_text(encoding="utf-8").splitlines()) > 400 and str(p.relative_to(REPO)) not in allowed]
    assert not long, long
