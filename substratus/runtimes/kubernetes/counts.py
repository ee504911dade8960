"""What the Kubernetes runtime asks of the API server, and for what (``bench/refresh.py``).

Every HTTP request a ``Cluster`` sends is counted by verb and by *account*: the step it serves,
set with ``account(name)`` around a runtime step (``"apply dataset"``, ``"refresh"``, …; a
``ContextVar``, so each apply thread counts for its own resource; ``"-"`` outside any step).
``account`` also counts how often each step ran, so a count per applied resource is a division.

With ``$SUBSTRATUS_K8S_COUNTS`` set to a file path, the process writes, when it exits, the sums
over all its ``Cluster``s as JSON: ``{"requests": n, "by_verb": {verb: n}, "by_account":
{account: {verb: n}}, "steps": {account: times run}}`` — how a benchmark counts the requests of
an apply run through the CLI in another process without parsing its output. Nothing is written
without the variable.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

ENV = "SUBSTRATUS_K8S_COUNTS"
_ACCOUNT: ContextVar[str] = ContextVar("substratus_k8s_account", default="-")
_lock = threading.Lock()
_steps: Counter[str] = Counter()
_counters: list[Counts] = []


class Counts:
    """The requests of one ``Cluster``: in total, per verb, per (account, verb)."""

    def __init__(self) -> None:
        self.requests = 0
        self.by_verb: Counter[str] = Counter()
        self.by_account: Counter[tuple[str, str]] = Counter()
        with _lock:
            if not _counters and os.environ.get(ENV):
                atexit.register(_write, Path(os.environ[ENV]))
            _counters.append(self)

    def add(self, verb: str) -> None:
        with _lock:
            self.requests += 1
            self.by_verb[verb] += 1
            self.by_account[(_ACCOUNT.get(), verb)] += 1


@contextmanager
def account(name: str) -> Iterator[None]:
    """Count the requests made inside as ``name``'s (in this thread or task)."""
    with _lock:
        _steps[name] += 1
    token = _ACCOUNT.set(name)
    try:
        yield
    finally:
        _ACCOUNT.reset(token)


def summary() -> dict[str, Any]:
    """The sums over every ``Counts`` of this process (the JSON described above)."""
    with _lock:
        verbs: Counter[str] = Counter()
        accounts: dict[str, Counter[str]] = {}
        for c in _counters:
            verbs.update(c.by_verb)
            for (name, verb), n in c.by_account.items():
                accounts.setdefault(name, Counter())[verb] += n
        return {
            "requests": sum(verbs.values()),
            "by_verb": dict(verbs),
            "by_account": {k: dict(v) for k, v in sorted(accounts.items())},
            "steps": dict(_steps),
        }


def _write(path: Path) -> None:
    with contextlib.suppress(OSError):  # a count is a courtesy: never fail an exit over it
        path.write_text(json.dumps(summary(), indent=2, sort_keys=True) + "\n")
