"""The ``apply`` and ``destroy`` commands: plan, show, confirm and run in dependency order under
the state lock (``plan_and_apply``), or apply exactly a saved plan (``substratus.cli.saved``),
optionally only the one that was reviewed (``--expect-sha256``, ``substratus.ci.review``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from substratus.cli.options import (
    ArtifactsOpt,
    AutoApprove,
    Context,
    Files,
    Lock,
    LockTimeout,
    MaxCost,
    Namespace,
    NoColor,
    NoInput,
    NoRefresh,
    Parallelism,
    PlanFile,
    ProgressJson,
    RefreshOnly,
    Replace,
    RunOptions,
    RuntimeOpt,
    StateUrl,
    Strict,
    Target,
    Timeout,
    Workspace,
    workspace_given,
)
from substratus.engine.diagnostic import fail

ExpectSha256 = Annotated[
    str | None,
    typer.Option(
        "--expect-sha256",
        metavar="HEX|pr",
        help="Refuse a saved plan whose SHA-256 differs (the hash shown in review); `pr` "
        "reads it from the plan comment on the pull request (default: not checked).",
    ),
]


def apply(
    ctx: typer.Context,
    planfile: PlanFile = None,
    files: Files = None,
    auto_approve: AutoApprove = False,
    no_input: NoInput = False,
    target: Target = None,
    replace: Replace = None,
    refresh_only: RefreshOnly = False,
    no_refresh: NoRefresh = False,
    strict: Strict = False,
    max_cost: MaxCost = None,
    parallelism: Parallelism = 10,
    timeout: Timeout = None,
    as_json: ProgressJson = False,
    workspace: Workspace = "default",
    state: StateUrl = None,
    runtime: RuntimeOpt = None,
    artifacts: ArtifactsOpt = None,
    namespace: Namespace = None,
    context: Context = None,
    lock: Lock = True,
    lock_timeout: LockTimeout = "0s",
    no_color: NoColor = False,
    expect_sha256: ExpectSha256 = None,
) -> None:
    """Apply the configuration (plan, confirm, run in dependency order) or a saved plan.

    Examples: substratus apply -f examples/quickstart --auto-approve;
    substratus plan --out plan.json && substratus apply plan.json
    """
    opts = RunOptions.from_params(ctx.params)
    if planfile is not None:
        _refuse_fixed(planfile, opts)
        if expect_sha256:
            from substratus.ci.review import check_reviewed

            check_reviewed(planfile, expect_sha256)
        from substratus.cli.saved import apply_saved

        asked = workspace if workspace_given(ctx, files) else None
        apply_saved(planfile, opts, asked)
        return
    if expect_sha256:
        raise fail(
            "--expect-sha256 needs a saved plan",
            "Pass the plan file that was reviewed: substratus apply plan.json --expect-sha256 …",
        )
    plan_and_apply(opts)


def destroy(
    ctx: typer.Context,
    files: Files = None,
    auto_approve: AutoApprove = False,
    no_input: NoInput = False,
    target: Target = None,
    parallelism: Parallelism = 10,
    as_json: ProgressJson = False,
    workspace: Workspace = "default",
    state: StateUrl = None,
    runtime: RuntimeOpt = None,
    artifacts: ArtifactsOpt = None,
    namespace: Namespace = None,
    context: Context = None,
    lock: Lock = True,
    lock_timeout: LockTimeout = "0s",
    no_color: NoColor = False,
) -> None:
    """Destroy everything recorded in the state (dependents first).

    Example: substratus destroy -f examples/quickstart --auto-approve
    """
    plan_and_apply(RunOptions.from_params(ctx.params, destroy=True))


def _refuse_fixed(planfile: Path, opts: RunOptions) -> None:
    """A saved plan fixes what to apply and where: refuse the options that would change it."""
    fixed = {
        "--target": opts.plan.targets,
        "--replace": opts.plan.replace,
        "--refresh-only": opts.plan.refresh_only,
        "--no-refresh": not opts.plan.refresh,
        "--state": opts.settings.state,
        "--runtime": opts.settings.runtime,
        "--artifacts": opts.settings.artifacts,
        "--namespace": opts.settings.namespace,
        "--context": opts.settings.context,
    }
    given = [flag for flag, value in fixed.items() if value]
    if given:
        raise fail(
            f"{', '.join(given)} cannot be used with a saved plan",
            f"{planfile} already fixes what to apply and where; these options were decided "
            "when it was made. Plan again with them, or apply the saved plan without them.",
        )


def plan_and_apply(opts: RunOptions) -> None:
    """Plan, show the plan (not with ``--json``), confirm unless ``--auto-approve``, and apply
    it, all under the state lock (taken for ``destroy`` with a destroy plan, else ``apply``).
    With ``--json`` stdout is NDJSON from its first line (``cli.events``): the version, the
    progress, the summary, and an error as ``diagnostic`` events."""
    from substratus.cli.events import emit, errors_as_events, version_event

    as_json = opts.output.as_json
    if as_json:
        emit(version_event())
    with errors_as_events(as_json):
        _plan_and_apply(opts)


def _plan_and_apply(opts: RunOptions) -> None:
    # the engine, imported when a command runs (``--help`` and ``version`` do not need it)
    from substratus.cli.console import confirm, plan_color, print_plan
    from substratus.cli.locking import locked
    from substratus.cli.prepare import prepare
    from substratus.cli.reach import Reach
    from substratus.cli.walk import report, walk
    from substratus.engine.plan import Mode

    as_json = opts.output.as_json
    p = prepare(opts)
    destroying = p.options.mode is Mode.DESTROY
    operation = "destroy" if destroying else "apply"
    reach = Reach(p, opts, operation)  # what does not answer while planning: named at once
    with reach, locked(p.backend, operation, opts.lock.enabled, opts.lock.timeout) as watch:
        current, token = p.backend.read()
        reach.read()
        the_plan = p.plan(current)
        reach.planned()
        if not as_json:
            print_plan(the_plan, plan_color(opts.output.no_color))
        if not the_plan.has_changes:
            if as_json:  # the stream still says how it ended: nothing to do
                from substratus.engine.apply import ApplyResult

                report(the_plan, ApplyResult(), as_json)
            return
        if not opts.apply.auto_approve:
            question = (
                "Do you really want to destroy all resources?"
                if destroying
                else "Do you want to perform these actions?"
            )
            confirm(question, operation, no_input=opts.apply.no_input, quiet=as_json)
        if not as_json:
            print()
        result = walk(the_plan, current, token, p.backend, p.resolved, p.config, opts, lock=watch)
        # reported under the lock: a lock that cannot be removed then (the state's file
        # system went read-only) is a warning after the report, not an error instead of it
        report(the_plan, result, as_json)
