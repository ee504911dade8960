"""The failed attempts of a local job run (``spec.retries``): ``attempts.jsonl`` in its run
directory.

The supervisor (``supervise.py``) appends one JSON line per failed attempt — ``{"attempt": n,
"reason": "exit code 3", "code": 3, "final": false}`` — before it starts the next one (or, for
the last, before it writes ``exit_code``); ``final`` is true for an attempt no other follows.
Whoever waits for the run (``job.Jobs``, also an apply that adopted it after a crash) reads them
all with ``read``. A torn last line (a supervisor killed while writing it) is skipped. It
imports nothing from the engine (the supervisor starts fast).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from typing import Any

from substratus.runtimes.local.workdir import RunFiles


def reason(code: int) -> str:
    """Why an attempt that ended with ``code`` (a signal N as 128+N) failed."""
    if code > 128:
        try:
            name = f" ({signal.Signals(code - 128).name})"
        except ValueError:
            name = ""
        return f"killed by signal {code - 128}{name}"
    return f"exit code {code}"


def record(run: RunFiles, number: int, code: int, why: str, final: bool) -> None:
    """Append failed attempt ``number`` (best effort: lost only when the disk is full)."""
    line = json.dumps({"attempt": number, "reason": why, "code": code, "final": final})
    with contextlib.suppress(OSError):
        fd = os.open(run.attempts, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def read(run: RunFiles) -> list[dict[str, Any]]:
    """The failed attempts recorded so far, in order."""
    try:
        text = run.attempts.read_text()
    except OSError:
        return []
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("attempt"), int):
                out.append(entry)
    return out
