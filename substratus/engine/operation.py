"""Operations: the steps of ``validate`` and ``plan`` wired over the two protocols.

``validate_config`` checks a loaded configuration against a runtime (without touching the state).
``build_plan`` resolves build sources, checks the runtime can run everything, refreshes the
recorded resources through the runtime (one batch), reads external dependencies, calls the
pure planner, asks the runtime whether the plan's runs would have to take over objects that are
not this state's (``run_conflicts``: errors, before anything runs — also called before a saved
plan is applied), holds the plan's GPU requests against what the refresh saw the runtime offer
(``engine.capacity``: warnings, errors with ``PlanOptions.strict``), and estimates what it will
consume and cost (``engine.estimate``: a plan over ``lifecycle.maxCost`` or
``PlanOptions.max_cost`` fails). The CLI owns locking and printing; this module owns the order of
the steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from substratus.engine.address import Address
from substratus.engine.capacity import checked_capacity
from substratus.engine.checks import config_warnings, read_externals
from substratus.engine.config import Config
from substratus.engine.diagnostic import Diagnostic, DiagnosticError
from substratus.engine.digest import resolve_sources
from substratus.engine.estimate import checked_estimate
from substratus.engine.graph import Graph, build_graph
from substratus.engine.plan import Mode, Plan, PlanSettings
from substratus.engine.planner import PlanRequest, make_plan
from substratus.engine.runtime import Owner, PlannedRun, Runtime
from substratus.engine.statefile import StateFile


@dataclass
class PlanOptions:
    mode: Mode = Mode.NORMAL
    targets: list[Address] = field(default_factory=list)
    replace: list[Address] = field(default_factory=list)
    refresh: bool = True
    workspace: str = "default"
    strict: bool = False  # capacity findings are errors (engine.capacity)
    max_cost: float | None = None  # --max-cost: USD cap on the plan's jobs (engine.estimate)


def validate_config(
    config: Config, runtime: Runtime | None
) -> tuple[list[Diagnostic], Graph[Address]]:
    """Graph checks (cycles) and runtime checks; raises ``DiagnosticError`` on errors and
    returns the warnings and the graph."""
    graph = build_graph(config.resources)
    return config_warnings(config, runtime), graph


def run_conflicts(
    plan: Plan, config: Config, state: StateFile | None, runtime: Runtime
) -> list[Diagnostic]:
    """What the runtime says the plan's runs would have to take over (``Runtime.conflicts``,
    optional), with file:line filled in from the configuration; [] when nothing runs."""
    check = getattr(runtime, "conflicts", None)
    if check is None:  # the runtime takes nothing over (the local one)
        return []
    recorded = state.resources if state is not None else {}
    runs = [
        PlannedRun(
            address=c.address,
            kind=c.kind,
            namespace=c.namespace,
            name=c.name,
            action=c.action,
            spec=c.after or {},
            recorded=c.address in recorded,
        )
        for c in plan.runs()
    ]
    if not runs:
        return []
    owner = Owner(state.lineage if state is not None else None, plan.workspace)
    by_address = {str(a): r for a, r in config.resources.items()}
    out = []
    for d in check(runs, owner):
        res = by_address.get(d.address or "")
        if res is not None and d.source is None:
            d = Diagnostic(d.severity, d.summary, d.detail, d.address, res.source, d.path)
        out.append(d)
    return out


def build_plan(
    config: Config,
    state: StateFile | None,
    runtime: Runtime,
    options: PlanOptions,
    settings: PlanSettings | None = None,
) -> Plan:
    """The plan of ``config`` against ``state`` (see the module docstring), built complete:
    its warnings hold the runtime's, the capacity findings and the estimate's."""
    graph = None
    noted: list[Diagnostic] = []  # the runtime's warnings (the configuration's: the planner's)
    if options.mode is not Mode.DESTROY:
        found, graph = validate_config(config, runtime)
        noted = [d for d in found if d not in config.warnings]
        resolve_sources(config.resources.values())
    observations = None
    if options.refresh:  # also with nothing recorded: the runtime checks it can reach its target
        owner = Owner(state.lineage if state is not None else None, options.workspace)
        observations = runtime.refresh(state.resources if state is not None else {}, owner)
    externals = read_externals(config, runtime) if options.mode is not Mode.DESTROY else {}
    plan = make_plan(
        PlanRequest(
            config=config,
            state=state,
            observations=observations,
            externals=externals,
            mode=options.mode,
            targets=options.targets,
            replace=options.replace,
            workspace=options.workspace,
            settings=settings or PlanSettings(),
            graph=graph,
        )
    )
    warnings = [*plan.warnings, *noted]
    if observations is not None:  # objects the runs would take over: refused before anything runs
        found = run_conflicts(plan, config, state, runtime)
        if any(d.is_error for d in found):
            raise DiagnosticError([d for d in found if d.is_error])
        warnings += found
        # capacity: what the refresh saw (None: not known)
        capacity = getattr(runtime, "capacity", lambda: None)()
        warnings += checked_capacity(plan, config, capacity, options.strict)
    cost, over = checked_estimate(plan, state, config.settings.project.prices, options.max_cost)
    return replace(plan, warnings=[*warnings, *over], estimate=cost)
