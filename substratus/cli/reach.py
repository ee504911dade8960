"""What a plan needs to reach, and every piece of it that does not answer, named in one run.

A plan contacts up to three kinds of outside services, in this order: the state backend (a
``gs://`` state: credentials and the bucket), the git hosts of the git build sources not pinned to
a commit (``git ls-remote``), and the runtime's target (the refresh: the cluster of ``runtime:
kubernetes``). Each stops the plan at its first failure, so one run would name one missing piece
at a time. ``Reach`` wraps the reading of the state and the planning: when they fail, it asks the
pieces not yet contacted (concurrently, each bounded by its own timeout: a closed port answers at
once, ``git ls-remote`` gives up after 60 s, the cluster's connection after 10 s; the runtime is
asked again when the failure may be its own, to tell a refresh that cannot reach it from a problem
of the plan) and raises one
``DiagnosticError``: a first diagnostic that names what does not answer and says how to preview
the plan without it (``--state file://…``: an empty local state; ``--no-refresh``: nothing asked
of the runtime; a git ``ref`` pinned to a full commit, used as is), then each piece's own error
with where it is configured (``file:line`` of the Project setting, or the flag), then the
configuration's own problems that an unread state kept the plan from checking. An error that is
not about reaching anything (a lock held, a local state's problem, a bad configuration) is raised
unchanged when every other piece answers. Nothing is written: the probes only read.
"""

from __future__ import annotations

import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from substratus.cli.locking import LOCK_HELD
from substratus.engine.diagnostic import Diagnostic, DiagnosticError

if TYPE_CHECKING:
    from substratus.cli.options import RunOptions
    from substratus.cli.prepare import Prepared

PREVIEW_STATE = "file://.substratus/preview"
PIN = (
    "pin each git source to a commit (`ref:` a full 40-character commit id): it is used as is, "
    "with no git host to ask"
)


@dataclass
class Missing:
    """The pieces that did not answer, by kind: ``state``, ``sources`` (git), ``runtime``."""

    state: list[Diagnostic] = field(default_factory=list)
    sources: list[Diagnostic] = field(default_factory=list)
    runtime: list[Diagnostic] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.state or self.sources or self.runtime)


class Reach:
    """``with Reach(prepared, opts) as reach:`` around locking and reading the state (then
    ``reach.read()``) and planning (then ``reach.planned()`` when more follows); see the
    module docstring."""

    def __init__(self, prepared: Prepared, opts: RunOptions, command: str = "plan") -> None:
        self.p, self.opts, self.command = prepared, opts, command
        self.state_ok = self.done = False

    def __enter__(self) -> Reach:
        return self

    def read(self) -> None:
        """The state was read: its backend answers."""
        self.state_ok = True

    def planned(self) -> None:
        """The plan was made: what fails from here on is not about reaching anything."""
        self.done = True

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not isinstance(exc, DiagnosticError) or self.done:
            return
        error = self._all_missing(list(exc.diagnostics))
        if error is not None:
            raise error from None

    def _all_missing(self, found: list[Diagnostic]) -> DiagnosticError | None:
        """The one error naming every missing piece; None when ``found`` says all there is."""
        missing, others = Missing(), list(found)
        if not self.state_ok:  # the sources and the runtime were not asked yet
            missing.sources, missing.runtime = self._ask(True, True)
            remote = not self.p.resolved.state_url.startswith("file://")
            if remote and not any(d.summary == LOCK_HELD for d in found):
                missing.state, others = found, []  # (a local state's problem is no reach's)
            others += self._checks() if missing else []
        elif found and all(is_source_error(d) for d in found):
            missing.sources, others = found, []
            missing.runtime = self._ask(False, True)[1]
        else:  # the runtime's refresh, or a problem of the plan itself
            missing.runtime = self._ask(False, True)[1]
            others = [d for d in found if d not in missing.runtime]
        if not missing:
            return None
        return DiagnosticError([self._summary(missing), *self._located(missing), *others])

    def _ask(self, sources: bool, runtime: bool) -> tuple[list[Diagnostic], list[Diagnostic]]:
        """The errors of the git sources and of the runtime's target, asked concurrently (each
        only when true and needed by the plan)."""
        from substratus.engine.plan import Mode

        sources = sources and self.p.options.mode is not Mode.DESTROY
        runtime = runtime and self.p.options.refresh
        with ThreadPoolExecutor(max_workers=2) as pool:
            git = pool.submit(self._git) if sources else None
            rt = pool.submit(self._runtime) if runtime else None
            return (git.result() if git else []), (rt.result() if rt else [])

    def _checks(self) -> list[Diagnostic]:
        """The configuration's problems the plan finds before contacting anything (with the
        runtime's checks), which an unread state kept it from reaching."""
        from substratus.engine.operation import validate_config
        from substratus.engine.plan import Mode

        if self.p.options.mode is Mode.DESTROY:  # a destroy does not check the configuration
            return []
        try:
            validate_config(self.p.config, self.p.runtime)
        except DiagnosticError as exc:
            return list(exc.diagnostics)
        return []

    def _git(self) -> list[Diagnostic]:
        from substratus.engine.digest import resolve_sources

        builds = [
            r
            for r in self.p.config.resources.values()
            if r.kind == "build" and r.spec.get("source") == "git"
        ]
        try:
            resolve_sources(builds)
        except DiagnosticError as exc:
            return list(exc.diagnostics)
        return []

    def _runtime(self) -> list[Diagnostic]:
        from substratus.engine.runtime import Owner

        try:  # with nothing recorded: whether the runtime reaches its target
            self.p.runtime.refresh({}, Owner(None, self.p.options.workspace))
        except DiagnosticError as exc:
            return list(exc.diagnostics)
        return []

    def _located(self, missing: Missing) -> list[Diagnostic]:
        """Each piece's errors, with where it is configured (git sources: their resource's)."""
        state = [self._where(d, "state", "--state", "SUBSTRATUS_STATE") for d in missing.state]
        runtime = [
            self._where(d, "runtime", "--runtime", "SUBSTRATUS_RUNTIME") for d in missing.runtime
        ]
        return [*state, *missing.sources, *runtime]

    def _where(self, d: Diagnostic, setting: str, flag: str, env: str) -> Diagnostic:
        """``d`` with where ``setting`` is configured: the Project's line, else the flag."""
        if d.source is not None:
            return d
        given = getattr(self.opts.settings, setting)
        if given is None:
            at = self.p.config.settings.where.get(setting)
            if at is not None:
                return Diagnostic(d.severity, d.summary, d.detail, d.address, at, f"spec.{setting}")
            return d
        by = env if os.environ.get(env) == given else flag
        detail = f"{d.detail}\n(Set by {by} {given}.)".strip()
        return Diagnostic(d.severity, d.summary, detail, d.address, None, d.path)

    def _preview(self, state: bool, runtime: bool) -> list[str]:
        """The plan command that needs neither the ``state`` nor the ``runtime``'s target."""
        command = ["substratus", "plan", *_files(self.opts), *_given(self.opts, state)]
        if state:
            command += ["--state", PREVIEW_STATE]
        if runtime:
            command.append("--no-refresh")
        return command

    def _summary(self, missing: Missing) -> Diagnostic:
        r = self.p.resolved
        names = []
        if missing.state:
            names.append(f"the state ({r.state_url})")
        if missing.sources:
            n = len(missing.sources)
            names.append(f"{n} git source{'s' if n > 1 else ''}")
        if missing.runtime:
            names.append("the cluster" if r.runtime == "kubernetes" else f"the {r.runtime} runtime")
        steps = []
        if missing.state or missing.runtime:
            steps = [
                "",
                f"  {shlex.join(self._preview(bool(missing.state), bool(missing.runtime)))}",
            ]
        notes = []
        if missing.state:
            notes.append(f"--state {PREVIEW_STATE}: an empty local state (a first apply's plan)")
        if missing.runtime:
            notes.append("--no-refresh: trusts the state, asks the runtime nothing")
        if missing.sources:
            notes.append(PIN)
        from substratus.engine.plan import Mode

        if self.p.options.mode is Mode.DESTROY:  # an empty preview state has nothing to destroy
            return Diagnostic.error(
                f"The {self.command} cannot reach {_join(names)}",
                "Each is below, with where it is configured.",
            )
        detail = "\n".join(
            [
                "Each is below, with where it is configured. To preview the plan without "
                + ("them" if len(names) > 1 else "it")
                + ":",
                *steps,
                "",
                *(f"- {n}" for n in notes),
            ]
        )
        return Diagnostic.error(f"The {self.command} cannot reach {_join(names)}", detail)


def _files(opts: RunOptions) -> list[str]:
    return [arg for f in opts.files or () for arg in ("-f", f)]


def _given(opts: RunOptions, state: bool) -> list[str]:
    """The settings the command line gave, as flags (the state's only when it answers)."""
    s = opts.settings
    flags = [
        ("--workspace", s.workspace if s.workspace != "default" else None),
        ("--state", None if state else s.state),
        ("--runtime", s.runtime),
        ("--artifacts", s.artifacts),
        ("--namespace", s.namespace),
        ("--context", s.context),
    ]
    return [arg for flag, value in flags if value is not None for arg in (flag, value)]


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def is_source_error(d: Diagnostic) -> bool:
    """Whether ``d`` says a build source could not be resolved (``engine.digest``)."""
    from substratus.engine.digest import SOURCE_UNRESOLVED

    return d.summary == SOURCE_UNRESOLVED
