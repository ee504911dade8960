"""The ``validate`` command: check the configuration (and that the runtime can run it) without
reading the state; ``--json`` prints the verdict and the diagnostics as one JSON document."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from substratus.cli.errors import EXIT_ERROR, print_diagnostics, use_color
from substratus.cli.options import Files, Namespace, NoColor, RunOptions, RuntimeOpt
from substratus.engine.diagnostic import Diagnostic, DiagnosticError
from substratus.wiring import Resolved

if TYPE_CHECKING:
    from substratus.engine.config import Config


def validate(
    ctx: typer.Context,
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
    opts = RunOptions.from_params(ctx.params)
    try:
        cfg, r, warnings = _check(opts)
    except DiagnosticError as exc:
        if as_json:
            doc = {"valid": False, "diagnostics": [d.to_json() for d in exc.diagnostics]}
            print(json.dumps(doc, indent=2))
            raise typer.Exit(EXIT_ERROR) from exc
        raise
    if as_json:
        doc = {
            "valid": True,
            "resources": len(cfg.resources),
            "diagnostics": [d.to_json() for d in warnings],
        }
        print(json.dumps(doc, indent=2))
        return
    print_diagnostics(warnings, use_color(no_color))
    n = sum(1 for res in cfg.resources.values() if res.kind != "build")
    print(f"Success! The configuration is valid ({n} resources, runtime {r.runtime}).")


def _check(opts: RunOptions) -> tuple[Config, Resolved, list[Diagnostic]]:
    """The configuration, its settings and its warnings; an error is a ``DiagnosticError``.
    With the local runtime the artifacts it reads from outside must exist (a cluster is not
    contacted)."""
    # imported here, not at start-up: the configuration loader and the spec models (pydantic)
    from substratus.cli.prepare import setup
    from substratus.engine.checks import check_config, read_externals
    from substratus.wiring import make_runtime

    cfg, r = setup(opts)
    rt = make_runtime(r)
    warnings = check_config(cfg, rt)
    if r.runtime == "local":  # a cluster is not contacted to validate
        found = read_externals(cfg, rt)
        from substratus.engine.config import raise_dangling

        missing = [u for a, us in cfg.external.items() if a not in found for u in us]
        raise_dangling(missing, cfg.resources, "the artifact store (validate reads no state)")
    return cfg, r, warnings
