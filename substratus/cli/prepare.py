"""From a command's options (``RunOptions``) to what it works with: the configuration, the
resolved settings, the state backend, the runtime and the plan options (``substratus.wiring``
does the choosing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from substratus.cli.options import RunOptions, addresses
from substratus.engine.config import Config, load_config
from substratus.engine.diagnostic import DiagnosticError
from substratus.wiring import Resolved, make_backend, make_runtime, resolve, with_notebooks

# The planner (networkx, deepdiff) is imported by what plans, not by ``setup``: ``validate``
# loads the configuration without it.
if TYPE_CHECKING:
    from substratus.engine.backend import Backend
    from substratus.engine.operation import PlanOptions
    from substratus.engine.plan import Plan
    from substratus.engine.runtime import Runtime
    from substratus.engine.statefile import StateFile


@dataclass
class Prepared:
    """Everything a plan needs, wired from the command line: config, settings, backend,
    runtime and plan options."""

    config: Config
    resolved: Resolved
    backend: Backend
    runtime: Runtime
    options: PlanOptions

    def plan(self, current: StateFile | None) -> Plan:
        from substratus.engine.operation import build_plan
        from substratus.engine.plan import PlanSettings

        return build_plan(
            self.config,
            current,
            self.runtime,
            self.options,
            settings=PlanSettings.of(self.resolved.as_plan_settings()),
        )


def prepare(opts: RunOptions) -> Prepared:
    """The configuration, settings, backend, runtime and plan options ``opts`` ask for. The
    plan mode is checked before anything is read; ``--target``/``--replace`` after the
    configuration is loaded (their default namespace is the configuration's)."""
    from substratus.engine.operation import PlanOptions

    mode = opts.plan.mode
    cfg, r = setup(opts)
    flags = opts.plan

    def known() -> list[str]:  # for the message about a malformed address
        try:
            current, _ = make_backend(r).read()
        except Exception:  # the suggestion is then from the configuration alone
            current = None
        return [*map(str, cfg.resources), *(current.resources if current else ())]

    options = PlanOptions(
        mode=mode,
        targets=addresses(flags.targets, cfg.default_namespace, known),
        replace=addresses(flags.replace, cfg.default_namespace, known),
        refresh=flags.refresh,
        workspace=opts.settings.workspace,
        strict=flags.strict,
        max_cost=flags.max_cost,
    )
    return Prepared(cfg, r, make_backend(r), make_runtime(r), options)


def setup(opts: RunOptions) -> tuple[Config, Resolved]:
    """The configuration of ``opts.files`` (with the notebooks ``substratus notebook`` wrote
    beside it) and the settings ``opts`` resolve to."""
    paths = with_notebooks(opts.paths)
    cfg = load_config(paths, namespace=opts.settings.namespace)
    return cfg, resolve(cfg, paths, opts.settings)


def state_backend(opts: RunOptions) -> Backend:
    """The state backend ``opts`` name, for the commands about the state itself: they work even
    when the configuration is broken (its ``kind: Project`` is then not read)."""
    return make_backend(state_settings(opts))


def state_settings(opts: RunOptions) -> Resolved:
    """The settings ``opts`` resolve to, from the configuration when it loads (else from the
    command line and the defaults only)."""
    paths = opts.paths
    try:
        cfg = load_config(paths)
    except DiagnosticError:
        cfg = None  # the state commands work even when the configuration is broken
    return resolve(cfg, paths, opts.settings)
