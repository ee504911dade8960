"""Resource graphs as text: Mermaid flowcharts and Graphviz DOT (DESIGN §2 render, §9 ``graph``).

``mermaid(nodes, edges, actions)`` and ``dot(nodes, edges, actions)`` draw resource addresses
(``dataset.squad``, ``team-b/model.x``, ``build.images-loader``) joined by edges that point from
a dependency to its dependent. Addresses are never used as node ids: the nodes (those given plus
every edge end) are sorted and named ``n0, n1, …``, and the address goes into a quoted, escaped
label, so any text is safe. With ``actions`` (address → ``Action``) each node is labelled with
its plan symbol (``+ dataset.squad``, ``-/+ model.tuned``) and coloured by action: create green,
update amber, replace orange, delete red, read blue, no-op grey. Output is deterministic (sorted
nodes, edges and classes) and ends with a newline.

``plan_graph(plan)`` is the whole graph of a plan (``substratus graph PLANFILE``): every resource
of the plan — changes, reads and no-ops, each styled by its action — with every ``depends_on``
edge between them. ``changes_graph(plan)`` is the pull-request comment's smaller graph: every
change (not no-ops, not reads) plus the reads and no-ops a change directly depends on, with the
edges between those. ``config_graph(config)`` is the configured graph (resources, implicit
builds and external dependencies).
``check_mermaid(text)`` is a structural check of what ``mermaid`` writes (no renderer runs
offline); it returns problems, empty when fine. Pure functions; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from substratus.engine.plan import Action, Plan

if TYPE_CHECKING:
    from substratus.engine.config import Config

Edge = tuple[str, str]

TEXT_COLOR = "#1f2328"
_SAFE = re.compile(r"[A-Za-z0-9 ._/+=~:,()-]")


def node_ids(nodes: Iterable[str], edges: Iterable[Edge] = ()) -> dict[str, str]:
    """Address -> ``n<i>``, over the sorted union of ``nodes`` and every edge end."""
    every = set(nodes)
    for a, b in edges:
        every.update((a, b))
    return {address: f"n{i}" for i, address in enumerate(sorted(every))}


def label(address: str, actions: Mapping[str, Action] | None) -> str:
    """The unescaped node label: ``<symbol> <address>`` (just the address without a symbol)."""
    action = actions.get(address) if actions else None
    symbol = action.symbol if action is not None else ""
    return f"{symbol} {address}" if symbol else address


def _mermaid_text(text: str) -> str:
    # Mermaid entity codes (#<decimal>;) for anything that could end or reinterpret the label.
    return "".join(c if _SAFE.fullmatch(c) else f"#{ord(c)};" for c in text)


def _dot_text(text: str) -> str:
    # Graphviz reads entities (&#9829;) in labels and backslash escapes: keep both literal.
    text = text.replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("\n", "\\n")


def _sorted_edges(edges: Iterable[Edge], ids: Mapping[str, str]) -> list[Edge]:
    return sorted(
        {(ids[a], ids[b]) for a, b in edges}, key=lambda e: (int(e[0][1:]), int(e[1][1:]))
    )


def _classes(
    ids: Mapping[str, str], actions: Mapping[str, Action] | None
) -> list[tuple[Action, list[str]]]:
    if not actions:
        return []
    out = []
    for action in Action:
        members = [ids[a] for a in ids if actions.get(a) is action]
        if members:
            out.append((action, members))
    return out


def mermaid(
    nodes: Iterable[str],
    edges: Iterable[Edge],
    actions: Mapping[str, Action] | None = None,
    direction: str = "LR",
) -> str:
    """A Mermaid ``flowchart`` (``LR`` or ``TD``) of the graph, coloured by ``actions``."""
    edges = list(edges)
    ids = node_ids(nodes, edges)
    lines = [f"flowchart {direction}"]
    lines += [f'  {i}["{_mermaid_text(label(a, actions))}"]' for a, i in ids.items()]
    lines += [f"  {a} --> {b}" for a, b in _sorted_edges(edges, ids)]
    for action, members in _classes(ids, actions):
        name, look = action.look.graph_class, action.look
        lines.append(f"  classDef {name} fill:{look.fill},stroke:{look.stroke},color:{TEXT_COLOR}")
        lines.append(f"  class {','.join(members)} {name}")
    return "\n".join(lines) + "\n"


def dot(
    nodes: Iterable[str],
    edges: Iterable[Edge],
    actions: Mapping[str, Action] | None = None,
    name: str = "substratus",
) -> str:
    """A Graphviz ``digraph`` of the graph, coloured by ``actions``."""
    edges = list(edges)
    ids = node_ids(nodes, edges)
    lines = [
        f'digraph "{_dot_text(name)}" {{',
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", '
        f'color="#6e7781", fontcolor="{TEXT_COLOR}", fontname="Helvetica"];',
    ]
    for address, i in ids.items():
        action = actions.get(address) if actions else None
        attrs = f'label="{_dot_text(label(address, actions))}"'
        if action is not None:
            attrs += f', fillcolor="{action.look.fill}", color="{action.look.stroke}"'
        lines.append(f"  {i} [{attrs}];")
    lines += [f"  {a} -> {b};" for a, b in _sorted_edges(edges, ids)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def plan_graph(plan: Plan) -> tuple[list[str], list[Edge], dict[str, Action]]:
    """Nodes, edges and actions of every resource of the plan (changes, reads and no-ops)."""
    return _subgraph(plan, {c.address for c in plan.resource_changes})


def changes_graph(plan: Plan) -> tuple[list[str], list[Edge], dict[str, Action]]:
    """Nodes, edges and actions of the plan's changes and the reads/no-ops they depend on."""
    by_address = {c.address: c for c in plan.resource_changes}
    acting = plan.changes()
    chosen = {c.address for c in acting}
    for c in acting:
        chosen.update(d for d in c.depends_on if d in by_address)
    return _subgraph(plan, chosen)


def _subgraph(plan: Plan, chosen: set[str]) -> tuple[list[str], list[Edge], dict[str, Action]]:
    """The ``chosen`` resources of the plan with every ``depends_on`` edge among them."""
    by_address = {c.address: c for c in plan.resource_changes}
    edges = sorted(
        {
            (dep, address)
            for address in chosen
            for dep in by_address[address].depends_on
            if dep in chosen
        }
    )
    return sorted(chosen), edges, {a: by_address[a].action for a in sorted(chosen)}


def config_graph(config: Config) -> tuple[list[str], list[Edge]]:
    """Nodes and edges of the configuration: resources, builds and external dependencies."""
    nodes = {str(a) for a in config.resources} | {str(a) for a in config.external}
    edges = {
        (str(dep.address), str(res.address))
        for res in config.resources.values()
        for dep in res.dependencies
    }
    for a, b in edges:
        nodes.update((a, b))
    return sorted(nodes), sorted(edges)


_NODE = re.compile(r'^  (n\d+)\["([^"\[\]]*)"\]$')
_EDGE = re.compile(r"^  (n\d+) --> (n\d+)$")
_CLASSDEF = re.compile(r"^  classDef ([a-z]+) ([a-z-]+:#[0-9a-f]{6})(,[a-z-]+:#[0-9a-f]{6})*$")
_CLASS = re.compile(r"^  class (n\d+(?:,n\d+)*) ([a-z]+)$")


def check_mermaid(text: str) -> list[str]:
    """Structural problems of a flowchart as ``mermaid`` writes it (empty list: fine)."""
    problems: list[str] = []
    lines = text.splitlines()
    if not lines or lines[0] not in ("flowchart LR", "flowchart TD"):
        problems.append("the first line is not 'flowchart LR' or 'flowchart TD'")
    defined: set[str] = set()
    class_defs: set[str] = set()
    used: list[tuple[int, str, list[str]]] = []
    for n, line in enumerate(lines[1:], start=2):
        if m := _NODE.match(line):
            if m.group(1) in defined:
                problems.append(f"line {n}: node {m.group(1)} defined twice")
            defined.add(m.group(1))
            if any(c in m.group(2) for c in '"<>`'):
                problems.append(f"line {n}: raw quote, bracket or backtick in a label")
        elif m := _EDGE.match(line):
            used.append((n, "edge", [m.group(1), m.group(2)]))
        elif m := _CLASSDEF.match(line):
            class_defs.add(m.group(1))
        elif m := _CLASS.match(line):
            used.append((n, m.group(2), m.group(1).split(",")))
        else:
            problems.append(f"line {n}: not a node, edge, classDef or class line: {line!r}")
        if line.count('"') % 2 or line.count("[") != line.count("]"):
            problems.append(f"line {n}: unbalanced quotes or brackets")
    for n, what, ids in used:
        problems += [f"line {n}: {i} is not a defined node" for i in ids if i not in defined]
        if what != "edge" and what not in class_defs:
            problems.append(f"line {n}: class {what} has no classDef")
    return problems
