"""The output of local runs: ``LocalLogs.logs``, the ``LogSource`` of the local runtime.

A run's output is its ``log.txt`` (``workdir.RunFiles``: stdout and stderr of a job's
supervisor and command, or of a server's or notebook's process), found by the run's version
(or the ``log`` its outputs recorded, rebased to where the working directory is now). Without
``follow`` it is read as it is (the last ``tail`` lines: read backwards from the end in
blocks, so a long training log is not read whole); with ``follow`` the lines appended later
are read too until the process that writes them has ended: a job's supervisor (it holds the
run's ``lock`` for its whole life, from before the log exists), a server's process
(``process.json``). A run that has no log (not started yet, suspended, a build or a model
that is only a location) raises ``NoLog``. It reads files only: it never takes a lock that
another process could wait for (the lock is probed, shared and non-blocking, and released
at once).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from substratus.engine import kinds
from substratus.engine.runtime import LogRequest, NoLog
from substratus.runtimes.local import runlock
from substratus.runtimes.local.files import read_json
from substratus.runtimes.local.process import ProcessRef
from substratus.runtimes.local.workdir import RunFiles, Workdir, rebase

BLOCK = 64 * 1024


def tail_offset(path: Path, lines: int) -> int:
    """Where the last ``lines`` lines of ``path`` start (a last line without a newline
    counts), reading backwards from the end in blocks."""
    with path.open("rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        if lines <= 0:
            return end
        pos, seen = end, 0
        while pos > 0:
            size = min(BLOCK, pos)
            pos -= size
            fh.seek(pos)
            block = fh.read(size)
            if pos + size == end and block.endswith(b"\n"):
                block = block[:-1]  # the final newline ends the last line, it starts none
            at = len(block)
            while True:
                at = block.rfind(b"\n", 0, at)
                if at < 0:
                    break
                seen += 1
                if seen == lines:
                    return pos + at + 1
        return 0


def read_lines(
    path: Path,
    start: int,
    alive: Callable[[], bool] | None,
    cancelled: threading.Event,
    poll: float,
) -> Iterator[str]:
    """The lines of ``path`` from ``start``; with ``alive``, then those appended later until
    ``alive()`` is False (checked before the last read, so nothing written before it ended
    is missed) or ``cancelled`` is set."""
    with path.open("rb") as fh:
        fh.seek(start)
        rest = b""
        while True:
            ended = alive is None or not alive() or cancelled.is_set()
            chunk = fh.read(BLOCK)
            if chunk:
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
                continue
            if ended:
                break
            time.sleep(poll)  # waiting for the workload to write: the product polls here
        if rest:
            yield rest.decode(errors="replace")


class LocalLogs:
    def __init__(self, workdir: Workdir, poll: float = 0.1) -> None:
        self.workdir, self.poll = workdir, poll

    def logs(self, request: LogRequest, cancelled: threading.Event) -> Iterator[str]:
        run, alive = self._run(request)
        outputs = rebase(request.outputs, self.workdir.root)
        log = Path(str(outputs.get("log") or run.log))
        if not log.is_file():
            raise NoLog(self._why_none(request, outputs))
        start = tail_offset(log, request.tail) if request.tail is not None else 0
        return read_lines(log, start, alive if request.follow else None, cancelled, self.poll)

    def _run(self, request: LogRequest) -> tuple[RunFiles, Callable[[], bool]]:
        """The run directory of the request's version and whether its process still runs."""
        kind, spec = request.kind, request.spec
        if kind == "build" or (kind == "model" and not kinds.is_job(kind, spec)):
            what = "a build" if kind == "build" else "a model that is only a location"
            raise NoLog(
                f"{request.address} runs no workload on the local runtime ({what}), so it has "
                "no log."
            )
        run = self.workdir.run(request.namespace, kind, request.name, request.version)
        if kinds.is_job(kind, spec):
            return run, lambda: runlock.held(run.lock)

        def serving() -> bool:
            ref = ProcessRef.from_json(read_json(run.process))
            return ref is not None and ref.alive()

        return run, serving

    @staticmethod
    def _why_none(request: LogRequest, outputs: dict[str, object]) -> str:
        address, version = request.address, request.version
        if outputs.get("suspended") is True or outputs.get("replicas") == 0:
            return (
                f"{address} is scaled to zero (suspended or replicas: 0): nothing runs, so it "
                "has no log. Apply it running again to see its output."
            )
        if request.running:
            return (
                f"{address}: its run {version}, started by the apply under way, has not written "
                "a log yet. Try again in a moment, or use --follow to wait for it."
            )
        return (
            f"{address}: its run {version} left no log (it was removed, or the run never "
            "started). Apply it again to run it."
        )
