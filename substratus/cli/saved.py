"""Applying a saved plan (``apply PLANFILE``): plan again with its options against the same
state and configuration (``engine.saved``), refuse any difference, and run the plan made
again."""

from __future__ import annotations

from pathlib import Path

from substratus.cli.locking import locked
from substratus.cli.options import RunOptions, addresses
from substratus.cli.planfile import read_plan
from substratus.cli.walk import report, walk
from substratus.engine.config import Config, load_config
from substratus.engine.diagnostic import DiagnosticError, fail
from substratus.engine.operation import PlanOptions, build_plan, run_conflicts
from substratus.engine.plan import Plan, staleness
from substratus.engine.runtime import Runtime
from substratus.engine.saved import differences
from substratus.engine.statefile import StateFile
from substratus.wiring import Resolved, make_backend, make_runtime


def apply_saved(planfile: Path, opts: RunOptions, workspace: str | None) -> None:
    """Apply a saved plan: plan again with its options against the same state and
    configuration (``engine.saved``), refuse any difference, and run the plan made again.
    ``workspace``: the one asked for (``--workspace``, ``SUBSTRATUS_WORKSPACE`` or selected),
    None when none was; another than the plan's is refused."""
    the_plan = read_plan(planfile)
    st = the_plan.settings.to_json()
    if workspace is not None and workspace != the_plan.workspace:
        raise fail(
            "The saved plan is for another workspace",
            f"{planfile} was made for the workspace {the_plan.workspace!r}, but this command "
            f"acts on {workspace!r}. Apply it in its own workspace (--workspace "
            f"{the_plan.workspace}), or plan again in {workspace!r}.",
        )
    paths = list(opts.files or ()) or list(the_plan.config_files)
    cfg = load_config(paths, namespace=str(st.get("namespace") or "default"))
    if cfg.digest != the_plan.config_digest:
        raise fail(
            "Saved plan is stale: the configuration changed",
            f"The configuration files ({', '.join(cfg.files)}) changed since {planfile} "
            "was created. Run plan again and apply the new plan.",
        )
    r = Resolved.from_plan_settings(st, the_plan.workspace)
    backend = make_backend(r)
    with locked(backend, "apply", opts.lock.enabled, opts.lock.timeout) as watch:
        current, token = backend.read()
        reason = staleness(
            the_plan, current.lineage if current else None, current.serial if current else None
        )
        if reason:
            raise fail("Saved plan is stale", reason)
        runtime = make_runtime(r)
        derived = _derive(the_plan, cfg, current, runtime, opts.plan.max_cost)
        _refuse_differences(planfile, differences(the_plan, derived))
        if not derived.has_changes:
            print("No changes. Nothing to apply.")
            return
        if not derived.refresh:  # a plan made with a refresh checked this already
            conflicts = [d for d in run_conflicts(derived, cfg, current, runtime) if d.is_error]
            if conflicts:
                raise DiagnosticError(conflicts)
        result = walk(derived, current, token, backend, r, cfg, opts, runtime, watch)
        # reported under the lock: a lock that cannot be removed then (the state's file
        # system went read-only) is a warning after the report, not an error instead of it
        report(derived, result, opts.output.as_json)


def _refuse_differences(planfile: Path, problems: list[str]) -> None:
    """Stop when a saved plan differs from the plan made again (``engine.saved``)."""
    if not problems:
        return
    shown = "\n".join(f"  - {p}" for p in problems[:20])
    more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise fail(
        "The saved plan is not what its configuration and state produce",
        f"{planfile} differs from the plan made again from the same configuration and "
        f"state:\n{shown}{more}\n\nNothing was applied. The file was edited, or "
        "something changed outside substratus since it was made: run plan again, "
        "review it, and apply the new plan.",
    )


def _derive(
    saved: Plan,
    cfg: Config,
    current: StateFile | None,
    runtime: Runtime,
    max_cost: float | None,
) -> Plan:
    """The plan ``saved``'s options make from this configuration and state now."""
    options = PlanOptions(
        mode=saved.mode,
        targets=addresses(list(saved.targets)),
        replace=addresses(list(saved.replace)),
        refresh=saved.refresh,
        workspace=saved.workspace,
        max_cost=max_cost,
    )
    return build_plan(cfg, current, runtime, options, settings=saved.settings)
