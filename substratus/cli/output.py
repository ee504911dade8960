"""The ``output`` command: the outputs of applied resources (endpoints, artifact URLs, logs)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from substratus.cli.addresses import complete
from substratus.cli.options import Files, RunOptions, StateUrl, Workspace


def output(
    ctx: typer.Context,
    address: Annotated[
        str | None,
        typer.Argument(
            metavar="ADDR",
            help="Only this resource (default: all).",
            autocompletion=complete,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
) -> None:
    """Print the outputs of applied resources (endpoints, artifact URLs, logs).

    Example: substratus output modelserver.tuned-ngram
    """
    from substratus.cli.prepare import state_backend
    from substratus.cli.state import recorded_address
    from substratus.engine.statefile import StateFile

    current, _ = state_backend(RunOptions.from_params(ctx.params)).read()
    records = (current or StateFile()).resources
    if address is not None:
        address = recorded_address(records, address)
    selected: dict[str, Any] = {
        a: r.outputs for a, r in sorted(records.items()) if address is None or a == address
    }
    if as_json:
        print(json.dumps(selected, indent=2))
        return
    for a, outs in selected.items():
        for k, v in sorted(outs.items()):
            print(f"{a}.{k} = {json.dumps(v)}")
