"""A deterministic sequence of state writes, for the journal tests (crash, kill -9, readers).

``advance(state)`` moves a state to its next serial the same way every time and returns the
``changed`` list a caller would pass to ``write``: mostly one address (a journal line: set or
remove), and every ``FORCE_COMPACT``-th write ``[]`` (a compaction). Records carry padding of
varying length so that the journal also reaches its size limit and compacts on its own. So the
state at serial ``s`` is known without reading anything: ``Expected().at(s)``. Also small helpers
the journal tests share: ``seeded``/``step`` (write a state), ``lines`` (the journal, decoded),
``record``, ``message`` (a diagnostic's text).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.statefile import ResourceRecord, StateFile
from substratus.state.local import FileBackend

LINEAGE = "00000000-0000-4000-8000-00000000cafe"
ADDRESSES = 41
FORCE_COMPACT = 29
PAD = "abcdefghij" * 200


def seed() -> StateFile:
    return StateFile(lineage=LINEAGE, serial=0)


def advance(state: StateFile) -> list[str]:
    """Apply write number ``state.serial + 1`` to ``state``; returns its ``changed``."""
    s = state.serial + 1
    state.serial = s
    name = f"r{s * 7 % ADDRESSES}"
    address = f"model.{name}"
    if s % 6 == 0 and address in state.resources:
        del state.resources[address]
    else:
        state.resources[address] = ResourceRecord(
            kind="Model",
            namespace="default",
            name=name,
            digest=f"sha256:{s}",
            spec={"pad": PAD[: s * 37 % len(PAD)], "serial": s},
            outputs={"note": "ünïcode ✓", "n": s / 3},
        )
    return [address] if s % FORCE_COMPACT else []


class Expected:
    """The state at any serial, computed by replaying ``advance`` (forwards only)."""

    def __init__(self) -> None:
        self.state = seed()

    def at(self, serial: int) -> StateFile:
        assert serial >= self.state.serial, "Expected only moves forwards"
        while self.state.serial < serial:
            advance(self.state)
        return self.state


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def message(exc: DiagnosticError) -> str:
    return " ".join(f"{d.summary} {d.detail}" for d in exc.diagnostics)


def lines(backend: FileBackend) -> list[dict[str, Any]]:
    if not backend.journal_path.exists():
        return []
    return [json.loads(line) for line in backend.journal_path.read_bytes().splitlines()]


def record(name: str, size: int = 0, **extra: Any) -> ResourceRecord:
    return ResourceRecord(
        kind="Model", namespace="default", name=name, spec={"pad": "x" * size}, **extra
    )


def seeded(backend: FileBackend, *names: str) -> tuple[StateFile, str]:
    state = seed()
    for name in names:
        state.resources[f"model.{name}"] = record(name)
    state.serial = 1
    return state, backend.write(state, None, [])


def step(backend: FileBackend, state: StateFile, token: str, changed: list[str]) -> str:
    state.serial += 1
    return backend.write(state, token, changed)
