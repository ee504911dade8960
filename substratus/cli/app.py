"""The ``substratus`` command line (typer): the composition root.

It wires configuration, a state backend and a runtime together (``substratus.wiring``), owns
locking, prompting and printing, and maps every outcome to an exit code (``substratus.cli.errors``):
0 success / no changes, 1 error, 2 ``plan --detailed-exitcode`` with changes. Shared options are
in ``substratus.cli.options``, running an apply (lock, prompt, walk, report) in
``substratus.cli.apply``, and the commands about the state itself in ``substratus.cli_state``.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Annotated

import typer

from substratus import __version__
from substratus.ci.review import check_reviewed, plan_markdown
from substratus.cli.apply import (
    apply_saved,
    locked,
    plan_and_apply,
    prepare,
    print_plan,
    setup,
    write_plan,
)
from substratus.cli.errors import (
    EXIT_CHANGES,
    EXIT_ERROR,
    print_diagnostics,
    report_unexpected,
    use_color,
)
from substratus.cli.events import emit, plan_events, version_event
from substratus.cli.options import (
    ArtifactsOpt,
    AutoApprove,
    Context,
    Files,
    Lock,
    LockTimeout,
    Namespace,
    NoColor,
    NoRefresh,
    Parallelism,
    RefreshOnly,
    Replace,
    RuntimeOpt,
    StateUrl,
    Target,
    Timeout,
    Workspace,
    workspace_given,
)
from substratus.engine.diagnostic import DiagnosticError, fail
from substratus.engine.operation import read_externals, validate_config
from substratus.engine.plan import Mode
from substratus.wiring import make_runtime

Strict = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Fail the plan when a GPU type or count asked for is offered by no node (a "
        "warning otherwise). A saved plan was checked when it was made.",
        envvar="SUBSTRATUS_STRICT",
    ),
]

MaxCost = Annotated[
    float | None,
    typer.Option(
        "--max-cost",
        min=0,
        metavar="USD",
        help="Fail before anything runs when the plan's jobs are estimated to cost more than "
        "USD (jobs of unknown duration are not counted). With a saved plan, its recorded "
        "estimate is checked.",
        envvar="SUBSTRATUS_MAX_COST",
    ),
]

app = typer.Typer(
    name="substratus",
    help="Plan and apply machine-learning resources (Datasets, Models, ModelServers, "
    "Notebooks) like Terraform: diff the configuration against the recorded state, show what "
    "will be built, loaded, retrained, rolled out or deleted and why, then apply it in order.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# -- shared options ----------------------------------------------------------------------------


def _mode(destroy: bool, refresh_only: bool) -> Mode:
    if destroy and refresh_only:
        raise fail("Incompatible options", "--destroy and --refresh-only cannot be combined.")
    return Mode.DESTROY if destroy else Mode.REFRESH_ONLY if refresh_only else Mode.NORMAL


# -- commands ----------------------------------------------------------------------------------
@app.command()
def validate(
    files: Files = None,
    namespace: Namespace = None,
    runtime: RuntimeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print diagnostics as JSON.")] = False,
    no_color: NoColor = False,
) -> None:
    """Check the configuration: YAML, kinds, fields, names, references, cycles, and that the
    runtime can run every resource. Reads no state.

    Example: substratus validate -f examples/quickstart
    """
    try:
        cfg, r = setup(
            files,
            state=None,
            runtime=runtime,
            artifacts=None,
            workspace="default",
            namespace=namespace,
        )
        rt = make_runtime(r)
        warnings = validate_config(cfg, rt)[0]
        if r.runtime == "local":  # a cluster is not contacted to validate
            found = read_externals(cfg, rt)
            from substratus.engine.config import raise_dangling

            missing = [u for a, us in cfg.external.items() if a not in found for u in us]
            raise_dangling(missing, cfg.resources, "the artifact store (validate reads no state)")
    except DiagnosticError as exc:
        if as_json:
            import json

            print(
                json.dumps(
                    {"valid": False, "diagnostics": [d.to_json() for d in exc.diagnostics]},
                    indent=2,
                )
            )
            raise typer.Exit(EXIT_ERROR) from exc
        raise
    if as_json:
        import json

        print(
            json.dumps(
                {
                    "valid": True,
                    "resources": len(cfg.resources),
                    "diagnostics": [d.to_json() for d in warnings],
                },
                indent=2,
            )
        )
        return
    print_diagnostics(warnings, use_color(no_color))
    n = sum(1 for res in cfg.resources.values() if res.kind != "build")
    print(f"Success! The configuration is valid ({n} resources, runtime {r.runtime}).")


@app.command()
def plan(
    files: Files = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Save the plan (JSON) to this file, to apply exactly it later."
        ),
    ] = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode", help="Exit 0 when there are no changes, 2 when there are."
        ),
    ] = False,
    target: Target = None,
    replace: Replace = None,
    destroy: Annotated[bool, typer.Option("--destroy", help="Plan to destroy everything.")] = False,
    refresh_only: RefreshOnly = False,
    no_refresh: NoRefresh = False,
    strict: Strict = False,
    max_cost: MaxCost = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Stream the plan as NDJSON events (for CI systems)."),
    ] = False,
    output_format: Annotated[
        str,
        typer.Option(
            "--format", help="text (Terraform-style), or markdown (a pull-request comment)."
        ),
    ] = "text",
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
    if output_format not in ("text", "markdown"):
        raise fail(f"Unknown --format {output_format!r}", "Use --format text or --format markdown.")
    if as_json:
        emit(version_event())
    p = prepare(
        files,
        mode=_mode(destroy, refresh_only),
        target=target,
        replace=replace,
        refresh=not no_refresh,
        workspace=workspace,
        state=state,
        runtime=runtime,
        artifacts=artifacts,
        namespace=namespace,
        context=context,
        strict=strict,
    )
    p.options.max_cost = max_cost
    with locked(p.backend, "plan", lock, lock_timeout):
        current, _token = p.backend.read()
        the_plan = p.plan(current)
    if out is not None:
        write_plan(out, the_plan)
    if as_json:
        for event in plan_events(the_plan, out):
            emit(event)
    elif output_format == "markdown":
        print(plan_markdown(the_plan, p.resolved, plan_file=out), end="")
    else:
        print_plan(the_plan, use_color(no_color) and sys.stdout.isatty())
    if out is not None:
        if not as_json and output_format == "text":
            print(
                f"\nSaved the plan to: {out}\n\nTo perform exactly these actions, run:\n"
                f"  substratus apply {out}"
            )
    elif not as_json and output_format == "text" and the_plan.has_changes:
        print(
            "\nNote: You didn't use the --out option to save this plan, so substratus can't "
            'guarantee to take exactly these actions if you run "substratus apply" now.'
        )
    if detailed_exitcode and the_plan.has_changes:
        raise typer.Exit(EXIT_CHANGES)


@app.command()
def apply(
    ctx: typer.Context,
    planfile: Annotated[
        Path | None,
        typer.Argument(help="A plan saved with `plan --out`; applied exactly, without a prompt."),
    ] = None,
    files: Files = None,
    auto_approve: AutoApprove = False,
    target: Target = None,
    replace: Replace = None,
    refresh_only: RefreshOnly = False,
    no_refresh: NoRefresh = False,
    strict: Strict = False,
    max_cost: MaxCost = None,
    parallelism: Parallelism = 10,
    timeout: Timeout = None,
    as_json: Annotated[bool, typer.Option("--json", help="Stream progress as NDJSON.")] = False,
    workspace: Workspace = "default",
    state: StateUrl = None,
    runtime: RuntimeOpt = None,
    artifacts: ArtifactsOpt = None,
    namespace: Namespace = None,
    context: Context = None,
    lock: Lock = True,
    lock_timeout: LockTimeout = "0s",
    no_color: NoColor = False,
    expect_sha256: Annotated[
        str | None,
        typer.Option(
            "--expect-sha256",
            help="Refuse a saved plan whose SHA-256 differs (the hash shown in review); `pr` "
            "reads it from the plan comment on the pull request.",
        ),
    ] = None,
) -> None:
    """Apply the configuration (plan, confirm, run in dependency order) or a saved plan.

    Examples: substratus apply -f examples/quickstart --auto-approve;
    substratus plan --out plan.json && substratus apply plan.json
    """
    if planfile is not None:
        fixed = {
            "--target": target,
            "--replace": replace,
            "--refresh-only": refresh_only,
            "--no-refresh": no_refresh,
            "--state": state,
            "--runtime": runtime,
            "--artifacts": artifacts,
            "--namespace": namespace,
            "--context": context,
        }
        given = [flag for flag, value in fixed.items() if value]
        if given:
            raise fail(
                f"{', '.join(given)} cannot be used with a saved plan",
                f"{planfile} already fixes what to apply and where; these options were decided "
                "when it was made. Plan again with them, or apply the saved plan without them.",
            )
        if expect_sha256:
            check_reviewed(planfile, expect_sha256)
        asked = workspace if workspace_given(ctx, files) else None
        apply_saved(
            planfile, files, asked, parallelism, timeout, as_json, lock, lock_timeout, max_cost
        )
        return
    if expect_sha256:
        raise fail(
            "--expect-sha256 needs a saved plan",
            "Pass the plan file that was reviewed: substratus apply plan.json --expect-sha256 …",
        )
    mode = _mode(False, refresh_only)
    plan_and_apply(
        files,
        mode,
        target,
        replace,
        not no_refresh,
        auto_approve,
        parallelism,
        timeout,
        as_json,
        workspace,
        state,
        runtime,
        artifacts,
        namespace,
        lock,
        lock_timeout,
        no_color,
        "apply",
        context,
        strict=strict,
        max_cost=max_cost,
    )


@app.command()
def destroy(
    files: Files = None,
    auto_approve: AutoApprove = False,
    target: Target = None,
    parallelism: Parallelism = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Stream progress as NDJSON.")] = False,
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
    plan_and_apply(
        files,
        Mode.DESTROY,
        target,
        None,
        True,
        auto_approve,
        parallelism,
        None,
        as_json,
        workspace,
        state,
        runtime,
        artifacts,
        namespace,
        lock,
        lock_timeout,
        no_color,
        "destroy",
        context,
    )


@app.command()
def version() -> None:
    """Print the substratus version."""
    print(f"substratus {__version__}")


def tune_gc() -> None:
    """A CLI run is short and allocates many small, acyclic objects (specs, addresses, JSON):
    collect the young generation less often. Measured with bench/plan_scale.py: about a
    quarter off loading and planning 10,000 resources."""
    gc.set_threshold(50_000, 20, 20)


def main() -> None:
    """Console entry point: runs the app and turns every failure into a clear message."""
    import importlib

    for module in ("notebook", "graph", "state"):  # register their commands, in this order
        importlib.import_module(f"substratus.cli.{module}")

    tune_gc()
    try:
        rc = app(standalone_mode=False)
    except DiagnosticError as exc:
        print_diagnostics(exc.diagnostics, use_color(False))
        sys.exit(EXIT_ERROR)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("\nAborted.", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # a usage error (bad flag)
            exc.show()
            sys.exit(EXIT_ERROR)
        log = report_unexpected(exc)
        print(
            f"Error: unexpected {type(exc).__name__}: {exc}\n\n  This is a bug in "
            f"substratus. The details are in {log}; please include them in a bug report.",
            file=sys.stderr,
        )
        sys.exit(EXIT_ERROR)
    sys.exit(rc if isinstance(rc, int) else 0)
