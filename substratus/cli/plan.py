"""The ``plan`` command: diff the configuration against the state and what runs, and show it as
text, as a pull-request comment (``--format markdown``) or as NDJSON events (``--json``);
``--out`` saves it for ``apply PLANFILE``, ``--detailed-exitcode`` exits 2 when it changes
anything."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from substratus.cli.errors import EXIT_CHANGES
from substratus.cli.options import (
    ArtifactsOpt,
    Context,
    Files,
    Lock,
    LockTimeout,
    MaxCost,
    Namespace,
    NoColor,
    NoRefresh,
    RefreshOnly,
    Replace,
    RunOptions,
    RuntimeOpt,
    StateUrl,
    Strict,
    Target,
    Workspace,
)
from substratus.engine.diagnostic import DiagnosticError, fail

if TYPE_CHECKING:
    from substratus.engine.plan import Plan
    from substratus.wiring import Resolved

Out = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        metavar="FILE",
        help="Save the plan (JSON) to this file, to apply exactly it later (default: not saved).",
    ),
]
DetailedExitcode = Annotated[
    bool,
    typer.Option("--detailed-exitcode", help="Exit 0 when there are no changes, 2 when there are."),
]
Destroy = Annotated[bool, typer.Option("--destroy", help="Plan to destroy everything.")]
PlanJson = Annotated[
    bool, typer.Option("--json", help="Stream the plan as NDJSON events (for CI systems).")
]
PlanFormat = Annotated[
    str,
    typer.Option(
        "--format",
        metavar="text|markdown",
        help="text (Terraform-style), or markdown (a pull-request comment).",
    ),
]


def plan(
    ctx: typer.Context,
    files: Files = None,
    out: Out = None,
    detailed_exitcode: DetailedExitcode = False,
    target: Target = None,
    replace: Replace = None,
    destroy: Destroy = False,
    refresh_only: RefreshOnly = False,
    no_refresh: NoRefresh = False,
    strict: Strict = False,
    max_cost: MaxCost = None,
    as_json: PlanJson = False,
    output_format: PlanFormat = "text",
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
    """Show what apply would do: diff the configuration against the state and what runs.

    Example: substratus plan -f examples/quickstart --out plan.json --detailed-exitcode
    """
    # the engine, imported when the command runs (``--help`` does not need it)
    from substratus.cli.locking import locked
    from substratus.cli.prepare import prepare
    from substratus.cli.reach import Reach

    opts = RunOptions.from_params(ctx.params)
    if output_format not in ("text", "markdown"):
        raise fail(f"Unknown --format {output_format!r}", "Use --format text or --format markdown.")
    if as_json:
        from substratus.cli.events import emit, version_event  # the plan's JSON: only for --json

        emit(version_event())
    try:
        p = prepare(opts)
        reach = Reach(p, opts)  # what does not answer: every piece named at once
        with reach, locked(p.backend, "plan", opts.lock.enabled, opts.lock.timeout):
            current, _token = p.backend.read()
            reach.read()
            the_plan = p.plan(current)
    except DiagnosticError as exc:  # --json: the errors are events too (`comment` posts them)
        for d in exc.diagnostics if as_json else []:
            emit({"type": "diagnostic", **d.to_json()})
        raise
    if out is not None:
        from substratus.cli.planfile import write_plan  # the plan's JSON: only with --out

        write_plan(out, the_plan)
    _show(the_plan, p.resolved, opts, out)
    if detailed_exitcode and the_plan.has_changes:
        raise typer.Exit(EXIT_CHANGES)


def _show(the_plan: Plan, resolved: Resolved, opts: RunOptions, out: Path | None) -> None:
    """The plan in the format asked for; as text, followed by how to apply it."""
    from substratus.cli.console import plan_color, print_plan

    if opts.output.as_json:
        from substratus.cli.events import emit, plan_events

        for event in plan_events(the_plan, out):
            emit(event)
        return
    if opts.output.format == "markdown":
        from substratus.ci.review import plan_markdown

        print(plan_markdown(the_plan, resolved, plan_file=out), end="")
        return
    print_plan(the_plan, plan_color(opts.output.no_color))
    if out is not None:
        print(
            f"\nSaved the plan to: {out}\n\nTo perform exactly these actions, run:\n"
            f"  substratus apply {out}"
        )
    elif the_plan.has_changes:
        print(
            "\nNote: You didn't use the --out option to save this plan, so substratus can't "
            'guarantee to take exactly these actions if you run "substratus apply" now.'
        )
