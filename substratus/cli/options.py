"""Options shared by the CLI commands (typer ``Annotated`` aliases) and their parsing.

Each option also reads a ``SUBSTRATUS_*`` environment variable where DESIGN §9 says so.
"""

from __future__ import annotations

from typing import Annotated

import typer

from substratus.engine.address import Address
from substratus.engine.diagnostic import fail

Files = Annotated[
    list[str] | None,
    typer.Option(
        "-f",
        "--file",
        help="Configuration file or directory of *.yaml (repeatable; default: .).",
        envvar="SUBSTRATUS_FILE",
    ),
]


def _workspace(ctx: typer.Context, value: str) -> str:
    """``--workspace`` or ``SUBSTRATUS_WORKSPACE`` when given, else the selected workspace."""
    source = ctx.get_parameter_source("workspace")
    if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
        return value
    from substratus.wiring import config_dir, selected_workspace

    files = ctx.params.get("files")
    return selected_workspace(config_dir(list(files or ["."]))) or value


def workspace_given(ctx: typer.Context, files: list[str] | None) -> bool:
    """Whether a workspace was asked for: ``--workspace``, ``SUBSTRATUS_WORKSPACE``, or one
    ``workspace select`` chose for the configuration."""
    source = ctx.get_parameter_source("workspace")
    if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
        return True
    from substratus.wiring import config_dir, selected_workspace

    return selected_workspace(config_dir(list(files or ["."]))) is not None


Workspace = Annotated[
    str,
    typer.Option(
        "--workspace",
        help="State workspace (default: the one `workspace select` chose, else default).",
        envvar="SUBSTRATUS_WORKSPACE",
        callback=_workspace,
    ),
]
StateUrl = Annotated[
    str | None,
    typer.Option(
        "--state",
        help="State backend: file://DIR (default <config dir>/.substratus/state) or gs://BUCKET/PREFIX.",
        envvar="SUBSTRATUS_STATE",
    ),
]
RuntimeOpt = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        help="Where resources run: local (default) or kubernetes.",
        envvar="SUBSTRATUS_RUNTIME",
    ),
]
ArtifactsOpt = Annotated[
    str | None,
    typer.Option(
        "--artifacts",
        help="Artifact store URL (default <config dir>/.substratus/artifacts).",
        envvar="SUBSTRATUS_ARTIFACTS",
    ),
]
Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        help="Default namespace for resources that name none.",
        envvar="SUBSTRATUS_NAMESPACE",
    ),
]
Context = Annotated[
    str | None,
    typer.Option(
        "--context", help="Kubernetes context (kubernetes runtime).", envvar="SUBSTRATUS_CONTEXT"
    ),
]
Lock = Annotated[
    bool,
    typer.Option(
        "--lock/--no-lock",
        help="Lock the state while working (default: lock).",
        envvar="SUBSTRATUS_LOCK",
    ),
]
LockTimeout = Annotated[
    str,
    typer.Option(
        "--lock-timeout",
        help="How long to wait for a held lock, e.g. 0s, 30s, 5m.",
        envvar="SUBSTRATUS_LOCK_TIMEOUT",
    ),
]
NoColor = Annotated[bool, typer.Option("--no-color", help="Plain output without colours.")]
Parallelism = Annotated[
    int,
    typer.Option(
        "--parallelism",
        min=1,
        help="How many resources to apply at once.",
        envvar="SUBSTRATUS_PARALLELISM",
    ),
]
Target = Annotated[
    list[str] | None,
    typer.Option("--target", help="Limit to this address and its dependencies (repeatable)."),
]
Replace = Annotated[
    list[str] | None,
    typer.Option("--replace", help="Force this address to be replaced / run again (repeatable)."),
]
NoRefresh = Annotated[
    bool, typer.Option("--no-refresh", help="Do not check what actually runs; trust the state.")
]
RefreshOnly = Annotated[
    bool,
    typer.Option(
        "--refresh-only", help="Only record changes made outside substratus; change nothing."
    ),
]
AutoApprove = Annotated[bool, typer.Option("--auto-approve", help="Do not ask for confirmation.")]
Timeout = Annotated[
    float | None,
    typer.Option("--timeout", help="Seconds to wait for a server or notebook to become ready."),
]


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    for suffix in ("ms", "s", "m", "h"):
        if t.endswith(suffix) and t[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(t[: -len(suffix)]) * units[suffix]
    if t.replace(".", "", 1).isdigit():
        return float(t)
    raise fail(f"Invalid duration {text!r}", "Write a duration like 0s, 30s, 2m or 1h.")


def addresses(values: list[str] | None, flag: str, default_namespace: str = "") -> list[Address]:
    """Parse ``flag``'s addresses; a namespace part naming ``default_namespace`` is dropped, as
    in every address substratus prints (``default/model.x`` is ``model.x``)."""
    out = []
    for v in values or []:
        try:
            addr = Address.parse(v)
        except ValueError as exc:
            raise fail(f"Invalid {flag} address", str(exc) + ".") from exc
        if addr.namespace is not None and addr.namespace == default_namespace:
            addr = Address(addr.kind, addr.name)
        out.append(addr)
    return out
