"""What ``substratus.cli.main`` settles before it imports typer and the app: the command a run
names, and the garbage collector's tuning for it.

``tune_gc`` runs first because the imports alone (typer and the app) made 31 collections,
4–9 ms, of a ``validate``. Nothing here imports more than the standard library.
"""

from __future__ import annotations

import gc
import os
import sys

# The variable set when a shell asks for completions (``substratus.cli.completion``).
COMPLETE_VAR = "_SUBSTRATUS_COMPLETE"
# Commands that answer and end (they start nothing that keeps running): their run allocates
# many small acyclic objects and frees them at exit, so the cycle collector has nothing to find.
BRIEF = frozenset({"validate", "plan", "graph", "show", "output", "schema", "completion"})


def command_named() -> str | None:
    """The command this run names (its first argument); None when a shell asks for
    completions."""
    return None if os.environ.get(COMPLETE_VAR) else next(iter(sys.argv[1:]), None)


def tune_gc(command: str | None = None) -> None:
    """A CLI run is short and allocates many small, acyclic objects (specs, addresses, JSON):
    collect the young generation less often (measured with bench/plan_scale.py: about a
    quarter off loading and planning 10,000 resources), and not at all for a ``BRIEF``
    command (a further few percent of planning 10,000 resources; the same peak memory)."""
    gc.set_threshold(50_000, 20, 20)
    if command in BRIEF:
        gc.disable()
