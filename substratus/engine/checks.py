"""The checks of ``validate``: a loaded configuration against a runtime, without the state, the
planner or networkx (``engine.operation`` builds the plan on top of them).

``check_config`` finds dependency cycles with the standard library's ``graphlib``; only a
configuration that has one builds the networkx graph (``engine.graph.build_graph``), whose
diagnostics name every cycle. So validating a configuration without cycles stays light.
"""

from __future__ import annotations

import graphlib

from substratus.engine.address import Address
from substratus.engine.config import Config
from substratus.engine.diagnostic import Diagnostic, DiagnosticError
from substratus.engine.resource import Resource
from substratus.engine.runtime import ExternalResource, ResourceView, Runtime


def check_cycles(resources: dict[Address, Resource]) -> None:
    """Raise ``DiagnosticError`` naming every dependency cycle among ``resources`` (the same
    diagnostics as ``engine.graph.build_graph``); nothing when there is none."""
    order: graphlib.TopologicalSorter[Address] = graphlib.TopologicalSorter()
    for res in resources.values():
        order.add(res.address, *(d.address for d in res.dependencies if d.address in resources))
    try:
        order.prepare()
    except graphlib.CycleError:
        from substratus.engine.graph import build_graph  # networkx: only to name the cycles

        build_graph(resources)


def check_config(config: Config, runtime: Runtime | None) -> list[Diagnostic]:
    """Cycles, then the configuration's warnings and the runtime's objections; raises
    ``DiagnosticError`` on errors and returns the warnings."""
    check_cycles(config.resources)
    return config_warnings(config, runtime)


def config_warnings(config: Config, runtime: Runtime | None) -> list[Diagnostic]:
    """The configuration's warnings and the runtime's objections; raises ``DiagnosticError``
    on errors and returns the warnings."""
    diags = list(config.warnings)
    if runtime is not None:
        diags.extend(runtime_diagnostics(config, runtime))
    errors = [d for d in diags if d.is_error]
    if errors:
        raise DiagnosticError(errors)
    return diags


def runtime_diagnostics(config: Config, runtime: Runtime) -> list[Diagnostic]:
    """The runtime's objections, with file:line filled in from the configuration."""
    views = [
        ResourceView(str(r.address), r.kind, r.spec)
        for r in config.resources.values()
        if r.kind != "build"
    ]
    found = runtime.check(views)
    if not found:
        return []
    out = []
    by_address = {str(a): r for a, r in config.resources.items()}
    for d in found:
        res = by_address.get(d.address or "")
        if res is not None and d.source is None:
            d = Diagnostic(
                d.severity, d.summary, d.detail, d.address, res.source_of(d.path or "spec"), d.path
            )
        out.append(d)
    return out


def read_externals(config: Config, runtime: Runtime) -> dict[Address, ExternalResource]:
    """The external dependencies (``config.external``) the runtime finds; one it does not find
    is left out."""
    found: dict[Address, ExternalResource] = {}
    for addr in config.external:
        ns = addr.effective_namespace(config.default_namespace)
        hit = runtime.read_external(addr.kind, ns, addr.name)
        if hit is not None:
            found[addr] = hit
    return found
