"""Options shared by the CLI commands (typer ``Annotated`` aliases), their parsing, and the one
options object a command builds from its command line (``RunOptions``).

Each option also reads a ``SUBSTRATUS_*`` environment variable where DESIGN §9 says so.

Adding a flag: declare it (an alias here when several commands share it), add its field to the
group of ``RunOptions`` it belongs to and read it in that group's ``from_params``, use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from substratus.cli.addresses import complete, parse
from substratus.cli.console import no_color_option
from substratus.engine.address import Address
from substratus.engine.diagnostic import fail
from substratus.wiring import Overrides

if TYPE_CHECKING:
    from substratus.engine.plan import Mode

Files = Annotated[
    list[str] | None,
    typer.Option(
        "-f",
        "--file",
        metavar="PATH",
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
        metavar="NAME",
        help="State workspace (default: the one `workspace select` chose, else default).",
        envvar="SUBSTRATUS_WORKSPACE",
        callback=_workspace,
    ),
]
StateUrl = Annotated[
    str | None,
    typer.Option(
        "--state",
        metavar="URL",
        help="State backend: file://DIR or gs://BUCKET/PREFIX (default: the Project's, else "
        ".substratus/state next to the configuration).",
        envvar="SUBSTRATUS_STATE",
    ),
]
RuntimeOpt = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        metavar="NAME",
        help="Where resources run: local or kubernetes (default: the Project's, else local).",
        envvar="SUBSTRATUS_RUNTIME",
    ),
]
ArtifactsOpt = Annotated[
    str | None,
    typer.Option(
        "--artifacts",
        metavar="URL",
        help="Artifact store URL (default: the Project's, else .substratus/artifacts next to "
        "the configuration).",
        envvar="SUBSTRATUS_ARTIFACTS",
    ),
]
Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        metavar="NAME",
        help="Namespace for resources that name none (default: the Project's, else default).",
        envvar="SUBSTRATUS_NAMESPACE",
    ),
]
Context = Annotated[
    str | None,
    typer.Option(
        "--context",
        metavar="NAME",
        help="Kubernetes context (kubernetes runtime; default: the kubeconfig's current one).",
        envvar="SUBSTRATUS_CONTEXT",
    ),
]
Lock = Annotated[
    bool,
    typer.Option(
        "--lock/--no-lock",
        help="Lock the state while working.",
        envvar="SUBSTRATUS_LOCK",
    ),
]
LockTimeout = Annotated[
    str,
    typer.Option(
        "--lock-timeout",
        metavar="DURATION",
        help="How long to wait for a held lock, e.g. 0, 30s, 5m, 1h30m (0: do not wait).",
        envvar="SUBSTRATUS_LOCK_TIMEOUT",
    ),
]
NoColor = Annotated[
    bool,
    typer.Option(
        "--no-color",
        help="Plain output without colours (also when NO_COLOR is set).",
        callback=no_color_option,
        is_eager=True,  # before any other option's callback can report an error
    ),
]
Parallelism = Annotated[
    int,
    typer.Option(
        "--parallelism",
        min=1,
        metavar="N",
        help="How many resources to apply at once.",
        envvar="SUBSTRATUS_PARALLELISM",
    ),
]
Target = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        metavar="ADDR",
        help="Limit to this address and its dependencies (repeatable; default: everything).",
        autocompletion=complete,
    ),
]
Replace = Annotated[
    list[str] | None,
    typer.Option(
        "--replace",
        metavar="ADDR",
        help="Force this address to be replaced / run again (repeatable; default: none).",
        autocompletion=complete,
    ),
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
NoInput = Annotated[
    bool,
    typer.Option(
        "--no-input",
        help="Never ask: a confirmation needed without --auto-approve is an error (for CI).",
        envvar="SUBSTRATUS_NO_INPUT",
    ),
]
Timeout = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        metavar="DURATION",
        help="How long to wait for a server or notebook to become ready, e.g. 600, 90s, 20m, "
        "1h30m (default: the runtime's, 2m locally, 15m on Kubernetes).",
    ),
]
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
        "estimate is checked (default: no limit).",
        envvar="SUBSTRATUS_MAX_COST",
    ),
]
ProgressJson = Annotated[bool, typer.Option("--json", help="Stream progress as NDJSON.")]
PlanFile = Annotated[
    Path | None,
    typer.Argument(
        metavar="PLANFILE",
        help="A plan saved with `plan --out`; applied exactly, without a prompt.",
    ),
]


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_EXAMPLES = "90 (seconds), 90s, 20m, 1h30m"


def parse_duration(text: str, flag: str = "--lock-timeout") -> float:
    """The seconds of a duration: plain seconds (``90``, ``1.5``) or numbers with units ``h``,
    ``m``, ``s``, ``ms`` in a row (``90s``, ``20m``, ``1h30m``). Anything else — negative, NaN,
    infinite, no number — is one error naming ``flag``. Only ``re``: no start-up cost."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        return float(t)
    parts = _DURATION_PART.findall(t)
    if parts and "".join(n + u for n, u in parts) == t:
        return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    raise fail(f"Invalid {flag} {text.strip()}", f"{flag} {_duration_problem(t)}")


def _duration_problem(text: str) -> str:
    """Why ``text`` is no duration, as the end of a sentence starting with the flag."""
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and not math.isfinite(number):
        return f"takes a finite number of seconds or a duration: {DURATION_EXAMPLES}."
    if number is not None or text.startswith("-"):
        return f"takes a positive number of seconds or a duration: {DURATION_EXAMPLES}."
    return f"takes a duration: {DURATION_EXAMPLES}."


def addresses(
    values: Sequence[str] | None,
    default_namespace: str = "",
    known: Callable[[], Iterable[str]] = tuple,
) -> list[Address]:
    """Parse ``--target``/``--replace`` addresses (``cli.addresses.parse``: a malformed one
    names the closest of the ``known`` addresses); a namespace part naming
    ``default_namespace`` is dropped, as in every address substratus prints (``default/model.x``
    is ``model.x``)."""
    out = []
    for v in values or []:
        addr = parse(v, known)
        if addr.namespace is not None and addr.namespace == default_namespace:
            addr = Address(addr.kind, addr.name)
        out.append(addr)
    return out


# -- the options object ------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanFlags:
    """What to plan: ``--destroy``, ``--refresh-only``, ``--target``, ``--replace``,
    ``--no-refresh``, ``--strict``, ``--max-cost``."""

    destroy: bool = False
    refresh_only: bool = False
    targets: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    refresh: bool = True
    strict: bool = False
    max_cost: float | None = None

    @property
    def mode(self) -> Mode:
        """The plan mode; ``--destroy`` with ``--refresh-only`` is refused (when asked for, so a
        command reports it where it always did)."""
        if self.destroy and self.refresh_only:
            raise fail("Incompatible options", "--destroy and --refresh-only cannot be combined.")
        from substratus.engine.plan import Mode  # the plan model (pydantic): not at start-up

        if self.destroy:
            return Mode.DESTROY
        return Mode.REFRESH_ONLY if self.refresh_only else Mode.NORMAL

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> PlanFlags:
        """Refuses ``--refresh-only --no-refresh`` (the one has nothing to do without the
        other) and a ``--max-cost`` that is not a number."""
        if p.get("refresh_only") and p.get("no_refresh"):
            raise fail(
                "Incompatible options",
                "--refresh-only records what changed outside substratus, which --no-refresh "
                "does not look at: use one or the other.",
            )
        _finite(p.get("max_cost"), "--max-cost", "e.g. --max-cost 25")
        return cls(
            destroy=bool(p.get("destroy", False)),
            refresh_only=bool(p.get("refresh_only", False)),
            targets=tuple(p.get("target") or ()),
            replace=tuple(p.get("replace") or ()),
            refresh=not p.get("no_refresh", False),
            strict=bool(p.get("strict", False)),
            max_cost=p.get("max_cost"),
        )


@dataclass(frozen=True)
class ApplyFlags:
    """How to apply: ``--auto-approve``, ``--no-input``, ``--parallelism``, ``--timeout``
    (a duration, here in seconds)."""

    auto_approve: bool = False
    no_input: bool = False
    parallelism: int = 10
    timeout: float | None = None

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> ApplyFlags:
        """Refuses a ``--timeout`` that is not a positive duration (``parse_duration``)."""
        given = p.get("timeout")
        timeout = None if given is None else parse_duration(str(given), "--timeout")
        if timeout is not None and timeout <= 0:
            raise fail(
                f"Invalid --timeout {str(given).strip()}",
                "The timeout is how long to wait for a server or notebook to become ready: "
                "give a positive number of seconds or a duration, e.g. --timeout 600 or "
                "--timeout 20m, or leave it out.",
            )
        return cls(
            auto_approve=bool(p.get("auto_approve", False)),
            no_input=bool(p.get("no_input", False)),
            parallelism=int(p.get("parallelism", 10)),
            timeout=timeout,
        )


@dataclass(frozen=True)
class LockFlags:
    """``--lock/--no-lock`` and ``--lock-timeout`` (a duration, parsed when the lock is taken)."""

    enabled: bool = True
    timeout: str = "0s"

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> LockFlags:
        """Refuses a ``--lock-timeout`` that is no duration (``parse_duration``) up front."""
        timeout = str(p.get("lock_timeout", "0s"))
        parse_duration(timeout, "--lock-timeout")
        return cls(enabled=bool(p.get("lock", True)), timeout=timeout)


@dataclass(frozen=True)
class OutputFlags:
    """``--json``, ``--no-color`` and ``--format``."""

    as_json: bool = False
    no_color: bool = False
    format: str = "text"

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> OutputFlags:
        return cls(
            as_json=bool(p.get("as_json", False)),
            no_color=bool(p.get("no_color", False)),
            format=str(p.get("output_format", "text")),
        )


def _finite(value: float | None, flag: str, example: str) -> float | None:
    """``value`` unless it is NaN or infinite (``float`` options accept both)."""
    if value is not None and not math.isfinite(value):
        raise fail(f"Invalid {flag} {value}", f"{flag} takes a finite number, {example}.")
    return value


SETTING_FLAGS = {
    "state": "--state",
    "runtime": "--runtime",
    "artifacts": "--artifacts",
    "namespace": "--namespace",
    "context": "--context",
}


def _overrides(p: Mapping[str, Any]) -> Overrides:
    """The settings given; one given empty (``--state ""``) is refused rather than read as not
    given (an empty ``SUBSTRATUS_*`` variable is not given: typer ignores it)."""
    for key, flag in SETTING_FLAGS.items():
        value = p.get(key)
        if value is not None and not str(value).strip():
            raise fail(
                f"{flag} is empty",
                f"Give {flag} a value, or leave the option out to use the default "
                "(the Project's setting, else the built-in one).",
            )
    return Overrides(
        state=p.get("state"),
        runtime=p.get("runtime"),
        artifacts=p.get("artifacts"),
        namespace=p.get("namespace"),
        context=p.get("context"),
        workspace=str(p.get("workspace", "default")),
    )


@dataclass(frozen=True)
class RunOptions:
    """Everything one command was asked for, built once from its command line
    (``from_params``) and passed down unchanged. An option the command does not have keeps its
    default here. ``files``: the ``-f`` paths (None: none given, the current directory)."""

    files: tuple[str, ...] | None = None
    settings: Overrides = field(default_factory=Overrides)
    plan: PlanFlags = field(default_factory=PlanFlags)
    apply: ApplyFlags = field(default_factory=ApplyFlags)
    lock: LockFlags = field(default_factory=LockFlags)
    output: OutputFlags = field(default_factory=OutputFlags)

    @property
    def paths(self) -> list[str]:
        """The ``-f`` paths, or the current directory."""
        return list(self.files or ["."])

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **fixed: Any) -> RunOptions:
        """The options of a command's parsed parameters (``typer.Context.params``, keyed by the
        command's parameter names); ``fixed`` values replace or add some (``destroy=True``)."""
        p = {**params, **fixed}
        return cls(
            files=tuple(p.get("files") or ()) or None,
            settings=_overrides(p),
            plan=PlanFlags.from_params(p),
            apply=ApplyFlags.from_params(p),
            lock=LockFlags.from_params(p),
            output=OutputFlags.from_params(p),
        )
