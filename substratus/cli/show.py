"""The ``show`` command: a saved plan (text, JSON or a pull-request comment), or the state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from substratus.cli.options import Files, NoColor, RunOptions, StateUrl, Workspace
from substratus.engine.diagnostic import fail


def show(
    ctx: typer.Context,
    planfile: Annotated[
        Path | None,
        typer.Argument(metavar="PLANFILE", help="A saved plan; without it, the state is shown."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
    no_color: NoColor = False,
    output_format: Annotated[
        str,
        typer.Option(
            "--format", metavar="text|markdown", help="text, or markdown (a pull-request comment)."
        ),
    ] = "text",
) -> None:
    """Show a saved plan, or the current state.

    Examples: substratus show plan.json; substratus show --json plan.json; substratus show
    --format markdown plan.json; substratus show
    """
    if output_format not in ("text", "markdown"):
        raise fail(f"Unknown --format {output_format!r}", "Use --format text or --format markdown.")
    opts = RunOptions.from_params(ctx.params)
    if planfile is not None:
        _show_plan(planfile, opts)
        return
    from substratus.cli.prepare import state_backend
    from substratus.engine.statefile import StateFile

    current, _ = state_backend(opts).read()
    if as_json:
        print((current or StateFile()).to_json(), end="")
        return
    if current is None or not current.resources:
        print("The state is empty. Run `substratus apply` to create resources.")
        return
    for addr, rec in sorted(current.resources.items()):
        print(
            f"# {addr}  ({rec.status}, digest {rec.digest[:12] or '-'}, applied "
            f"{rec.applied_at or '-'})"
        )
        for k, v in sorted(rec.outputs.items()):
            print(f"    {k} = {json.dumps(v)}")
        print()


def _show_plan(planfile: Path, opts: RunOptions) -> None:
    """The saved plan as JSON (the file's document), Markdown or text."""
    from substratus.cli.console import plan_color
    from substratus.cli.planfile import read_plan
    from substratus.engine.plan_document import plan_text
    from substratus.engine.render import render_plan

    the_plan = read_plan(planfile)
    if opts.output.as_json:
        print(plan_text(the_plan), end="")
    elif opts.output.format == "markdown":
        from substratus.ci.review import file_sha256, plan_markdown

        sha = file_sha256(planfile)
        print(plan_markdown(the_plan, sha256=sha, plan_file=planfile), end="")
    else:
        print(render_plan(the_plan, color=plan_color(opts.output.no_color)), end="")
