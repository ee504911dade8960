"""The dependency graph of resources (networkx), with cycle diagnostics.

Edges point from a dependency to its dependent (``dataset.x → model.y``), so a topological order
is an apply order and its reverse a destroy order. ``build_graph`` raises ``DiagnosticError``
naming every cycle (``model.a → model.b → model.a``) with the file:line of the reference that
closes it. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from substratus.engine.address import Address
from substratus.engine.diagnostic import Diagnostic, DiagnosticError
from substratus.engine.resource import Resource


def build_graph(resources: dict[Address, Resource]) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(resources)
    for res in resources.values():
        for dep in res.dependencies:
            if dep.address in resources:
                graph.add_edge(dep.address, res.address)
    _check_cycles(graph, resources)
    return graph


def _check_cycles(graph: nx.DiGraph, resources: dict[Address, Resource]) -> None:
    if nx.is_directed_acyclic_graph(graph):
        return
    diags = []
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        cycle = nx.find_cycle(graph.subgraph(component))
        nodes = [u for u, _v in cycle]
        nodes = _rotate(nodes)
        text = " → ".join(str(a) for a in [*nodes, nodes[0]])
        last, first = nodes[-1], nodes[0]
        res = resources[first]
        dep = next(d for d in res.dependencies if d.address == last)
        diags.append(
            Diagnostic.error(
                "Dependency cycle",
                f"{text}. A resource cannot (indirectly) depend on itself; remove one of "
                "these references.",
                source=res.source_of(dep.path),
                address=str(first),
                path=dep.path,
            )
        )
    raise DiagnosticError(diags)


def _rotate(nodes: list[Address]) -> list[Address]:
    start = nodes.index(min(nodes, key=str))
    return nodes[start:] + nodes[:start]


def with_dependencies(graph: nx.DiGraph, targets: Iterable[Address]) -> set[Address]:
    """The targets and everything they (transitively) depend on."""
    out: set[Address] = set()
    for t in targets:
        if t in graph:
            out.add(t)
            out |= nx.ancestors(graph, t)
    return out


def topological(graph: nx.DiGraph) -> list[Address]:
    """A deterministic topological order (ties broken by address)."""
    return list(nx.lexicographical_topological_sort(graph, key=str))
