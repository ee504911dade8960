"""The ``graph`` command (DESIGN §9): ``graph [PLANFILE] [-f DIR] [--format dot|mermaid]``
prints the configured dependency graph, or, with a saved plan, the plan's resources coloured by
action.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from substratus.cli.options import Files, Namespace, RunOptions
from substratus.engine.diagnostic import fail


def graph(
    ctx: typer.Context,
    planfile: Annotated[
        Path | None,
        typer.Argument(
            metavar="PLANFILE", help="A saved plan: show all its resources coloured by action."
        ),
    ] = None,
    files: Files = None,
    output_format: Annotated[
        str, typer.Option("--format", metavar="dot|mermaid", help="Graphviz dot, or mermaid.")
    ] = "dot",
    namespace: Namespace = None,
) -> None:
    """Print the dependency graph: of the configuration, or of a saved plan with its actions.

    Examples: substratus graph -f examples/quickstart | dot -Tsvg > graph.svg;
    substratus graph plan.json --format mermaid
    """
    from substratus.cli.planfile import read_plan
    from substratus.cli.prepare import setup
    from substratus.engine.render_graph import config_graph, dot, mermaid, plan_graph

    if output_format not in ("dot", "mermaid"):
        raise fail(f"Unknown --format {output_format!r}", "Use --format dot or --format mermaid.")
    render = dot if output_format == "dot" else mermaid
    if planfile is not None:
        nodes, edges, actions = plan_graph(read_plan(planfile))
        print(render(nodes, edges, actions), end="")
        return
    cfg, _ = setup(RunOptions.from_params(ctx.params))
    nodes, edges = config_graph(cfg)
    print(render(nodes, edges), end="")
