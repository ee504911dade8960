"""The shape of the code base, checked: no import cycles, short functions, a small top level.

import-linter (pyproject.toml) checks the layers; these are the rules it cannot express.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "substratus"
MAX_FUNCTION_LINES = 60
TOP_LEVEL_ALLOWED = {"__init__.py", "__main__.py"}


def test_no_import_cycle_between_modules() -> None:
    graph = grimp.build_graph("substratus")
    imports = nx.DiGraph()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("substratus"):
                imports.add_edge(module, imported)
    cycles = [sorted(c) for c in nx.strongly_connected_components(imports) if len(c) > 1]
    assert cycles == [], f"modules that import each other (directly or round a loop): {cycles}"


def test_no_function_longer_than_the_limit() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_top_level_holds_only_the_entry_points_and_one_module() -> None:
    modules = {p.name for p in PACKAGE.glob("*.py")}
    others = modules - TOP_LEVEL_ALLOWED
    assert modules >= TOP_LEVEL_ALLOWED
    assert len(others) <= 1, f"top-level modules beyond __init__/__main__: {sorted(others)}"
