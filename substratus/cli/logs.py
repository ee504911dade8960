"""The ``logs`` command: the output of a resource's last run (a Dataset's or Model's job, a
ModelServer, a Notebook; a build where the runtime keeps one), read through the runtime's
``LogSource`` (``engine.runtime``): the local run log, or the pods' logs through the API
server, each line prefixed by its pod when there is more than one.

It reads the state without taking the lock, so it works while an apply runs; the run it shows
is ``LogRequest.of`` the record: the one an apply under way started (its pending intent names
it), else the last one. With ``--follow`` it streams until the workload ends; a run the state
names as started that has not written anything yet is waited for while the state still names
it (the state is read again every ``WAIT`` seconds). ``--tail N`` starts from the last N lines.
Nothing heavy is imported before the command runs.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from substratus.cli.addresses import complete
from substratus.cli.options import Context, Files, RunOptions, RuntimeOpt, StateUrl, Workspace
from substratus.engine.diagnostic import fail

if TYPE_CHECKING:
    from substratus.engine.backend import Backend
    from substratus.engine.runtime import LogRequest, LogSource
    from substratus.wiring import Resolved

WAIT = 0.5  # seconds between reads of the state while a started run has no log yet

Follow = Annotated[
    bool,
    typer.Option("--follow", help="Keep printing new output until the workload ends."),
]
Tail = Annotated[
    int | None,
    typer.Option(
        "--tail", min=0, metavar="N", help="Only the last N lines (then new ones; default: all)."
    ),
]


def logs(
    ctx: typer.Context,
    address: Annotated[
        str,
        typer.Argument(
            metavar="ADDR", help="Address, e.g. model.falcon-7b", autocompletion=complete
        ),
    ],
    follow: Follow = False,
    tail: Tail = None,
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
    runtime: RuntimeOpt = None,
    context: Context = None,
) -> None:
    """Print the output of a resource's last run (jobs, servers, notebooks); works while an
    apply runs (it does not take the state lock).

    Examples: substratus logs model.falcon-7b --tail 50; substratus logs modelserver.api --follow
    """
    from substratus.cli.prepare import state_settings

    opts = RunOptions.from_params(ctx.params)
    resolved = state_settings(opts)
    source = _source(resolved)
    from substratus.wiring import make_backend

    backend = make_backend(resolved)
    request = _request(backend, resolved.workspace, address, follow, tail)
    try:
        _print(source, backend, request, (resolved.workspace, address, follow, tail))
    except BrokenPipeError:  # `substratus logs … | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit


def _source(resolved: Resolved) -> LogSource:
    """The runtime the settings name, as a ``LogSource``."""
    from substratus.wiring import make_runtime

    runtime = make_runtime(resolved)
    if not hasattr(runtime, "logs"):
        raise fail(
            f"The {runtime.name} runtime cannot show logs",
            "Read the workload's output where it runs.",
        )
    source: LogSource = runtime  # type: ignore[assignment]
    return source


def _request(
    backend: Backend, workspace: str, address: str, follow: bool, tail: int | None
) -> LogRequest:
    """The run to show, from the state as it is now (read without the lock)."""
    from substratus.cli.addresses import parse
    from substratus.cli.state import recorded_key
    from substratus.engine.runtime import LogRequest, Owner
    from substratus.engine.statefile import StateFile

    current, _ = backend.read()
    records = (current or StateFile()).resources
    parse(address, lambda: records)
    key = recorded_key(records, address)
    record = records.get(key)
    owner = Owner(current.lineage if current else None, workspace)
    request = LogRequest.of(key, record, owner, follow, tail) if record is not None else None
    if request is None:
        raise fail(
            f"{key} has not run yet",
            f"The state (workspace {workspace}) records no run of {key}, so there is no log "
            f"to show. Run it with `substratus apply` (see `substratus state list` for the "
            "recorded addresses).",
        )
    return request


def _print(
    source: LogSource,
    backend: Backend,
    request: LogRequest,
    asked: tuple[str, str, bool, int | None],
) -> None:
    """Print the request's lines; with ``--follow``, wait for a started run's first output
    while the state still names it as the run under way."""
    import threading

    from substratus.engine.failure import Failure
    from substratus.engine.runtime import NoLog

    cancelled = threading.Event()
    while True:
        try:
            for line in source.logs(request, cancelled):
                print(line, flush=request.follow)
            return
        except NoLog as exc:
            if not (request.follow and request.running):
                raise fail("No log to show", str(exc)) from exc
        except Failure as exc:
            what = f"Cannot read the log of {request.address}: {exc.summary}"
            raise fail(what, exc.detail) from exc
        time.sleep(WAIT)  # the run has not started writing: read the state again
        request = _request(backend, *asked)
