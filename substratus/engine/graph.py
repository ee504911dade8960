"""The dependency graph of resources, with cycle diagnostics.

Edges point from a dependency to its dependent (``dataset.x → model.y``), so a topological order
is an apply order and its reverse a destroy order. ``build_graph`` raises ``DiagnosticError``
naming every cycle (``model.a → model.b → model.a``) with the file:line of the reference that
closes it. Pure; no I/O.

The graph is plain dictionaries: networkx (a tenth of a second to import) is imported only to
name the cycles of a configuration that has some.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Iterator
from typing import Generic, TypeVar

from substratus.engine.address import Address
from substratus.engine.diagnostic import Diagnostic, DiagnosticError
from substratus.engine.resource import Resource

N = TypeVar("N", bound=Hashable)


class Graph(Generic[N]):
    """Nodes (resource addresses, or recorded addresses as text) in the order given and the
    edges between them: ``dependents[a]`` are the nodes that use ``a``, ``dependencies[a]``
    those ``a`` uses. Every node's text (``str``) must be unique: it orders the nodes."""

    def __init__(self, nodes: Iterable[N]) -> None:
        self.dependents: dict[N, dict[N, None]] = {a: {} for a in nodes}
        self.dependencies: dict[N, dict[N, None]] = {a: {} for a in self.dependents}
        self._order: list[N] | None = None  # the topological order, once computed

    def __contains__(self, node: object) -> bool:
        return node in self.dependents

    def __iter__(self) -> Iterator[N]:
        return iter(self.dependents)

    def __len__(self) -> int:
        return len(self.dependents)

    def add_edge(self, dependency: N, dependent: N) -> None:
        self.dependents[dependency][dependent] = None
        self.dependencies[dependent][dependency] = None
        self._order = None

    def ancestors(self, address: N) -> set[N]:
        """Everything ``address`` depends on, directly or not (not itself)."""
        seen: set[N] = set()
        todo = list(self.dependencies[address])
        while todo:
            a = todo.pop()
            if a not in seen:
                seen.add(a)
                todo.extend(self.dependencies[a])
        return seen

    def topological(self) -> list[N] | None:
        """Kahn's order, always taking the ready node whose text sorts first (networkx's
        ``lexicographical_topological_sort`` with ``key=str``); None when there is a cycle.
        Computed once (until an edge is added); the caller must not change the list."""
        if self._order is not None:
            return self._order
        waiting = {a: len(deps) for a, deps in self.dependencies.items() if deps}
        ready = [(str(a), a) for a, deps in self.dependencies.items() if not deps]
        heapq.heapify(ready)
        order: list[N] = []
        while ready:
            node = heapq.heappop(ready)[1]
            order.append(node)
            for child in self.dependents[node]:
                waiting[child] -= 1
                if not waiting[child]:
                    del waiting[child]
                    heapq.heappush(ready, (str(child), child))
        if waiting:
            return None
        self._order = order
        return order


def build_graph(resources: dict[Address, Resource]) -> Graph[Address]:
    """The graph of the configured resources (references to resources not in ``resources``
    are left out); ``DiagnosticError`` naming every cycle if there is one."""
    graph = Graph(resources)
    for res in resources.values():
        for dep in res.dependencies:
            if dep.address in resources:
                graph.add_edge(dep.address, res.address)
    if graph.topological() is None:
        _raise_cycles(resources)
    return graph


def _raise_cycles(resources: dict[Address, Resource]) -> None:
    """Raise the diagnostics that name every cycle among ``resources`` (there is one)."""
    import networkx as nx

    nxgraph = nx.DiGraph()
    nxgraph.add_nodes_from(resources)
    for res in resources.values():
        for dep in res.dependencies:
            if dep.address in resources:
                nxgraph.add_edge(dep.address, res.address)
    diags = []
    for component in nx.strongly_connected_components(nxgraph):
        if len(component) < 2:
            continue
        cycle = nx.find_cycle(nxgraph.subgraph(component))
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


def with_dependencies(graph: Graph[Address], targets: Iterable[Address]) -> set[Address]:
    """The targets and everything they (transitively) depend on."""
    out: set[Address] = set()
    for t in targets:
        if t in graph:
            out.add(t)
            out |= graph.ancestors(t)
    return out


def topological(graph: Graph[N]) -> list[N]:
    """A deterministic topological order (ties broken by the nodes' text); ``ValueError`` if
    the graph has a cycle (``build_graph`` refuses those)."""
    order = graph.topological()
    if order is None:
        raise ValueError("the graph has a dependency cycle")
    return list(order)
