"""The state journal across processes: crashes at each step of a write, kill -9 at random
moments, readers without the lock while a writer runs."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.statefile import ResourceRecord, StateFile
from substratus.state.local import FileBackend
from tests.state.journal_workload import Expected, advance, seed

FORK = multiprocessing.get_context("fork")
CRASHED = 77


def record(name: str) -> ResourceRecord:
    return ResourceRecord(kind="Model", namespace="default", name=name, spec={"pad": "y" * 900})


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# -- a crash at each step of a write ---------------------------------------------------------------


def _next_state(state: StateFile) -> None:
    state.serial += 1
    state.resources["model.new"] = record("new")
    state.resources.pop("model.b", None)


def _crash_while_writing(directory: str, fn: str, when: str, changed: list[str]) -> None:
    backend = FileBackend(directory)
    backend.store._backed_up = True  # so the only renames are the state's own
    state, token = backend.read()
    assert state is not None
    _next_state(state)
    fn, _, nth = fn.partition("#")  # "write#2": the second call
    calls = [int(nth or 1)]
    real = getattr(os, fn)

    def dying(*args: Any, **kwargs: Any) -> Any:
        calls[0] -= 1
        if calls[0]:
            return real(*args, **kwargs)
        if when == "half":
            real(args[0], bytes(args[1][: len(args[1]) // 2]))
        elif when == "after":
            real(*args, **kwargs)
        os._exit(CRASHED)

    setattr(os, fn, dying)
    backend.write(state, token, changed)
    os._exit(0)  # the crash point was never reached


APPEND = ["model.new", "model.b"]
CRASH_POINTS = [
    # (write kind, os function, crash before/after/half-way through it, states allowed after)
    ("append", "write", "half", {"before"}),
    ("append", "fsync", "before", {"before", "after"}),  # written, not yet synced
    ("append", "fsync", "after", {"after"}),
    ("append-new-journal", "fsync", "after", {"after"}),  # before the directory fsync
    ("compact", "write", "half", {"before"}),  # the seal of the journal's lines
    ("compact", "fsync", "before", {"before"}),
    ("compact", "write#2", "half", {"before"}),  # the new base, in its temp file
    ("compact", "fsync#2", "before", {"before"}),
    ("compact", "replace", "before", {"before"}),  # sealed, not renamed: the next write compacts
    ("compact", "replace", "after", {"after"}),  # the journal left behind is stale
    ("compact", "unlink", "before", {"after"}),
]


@pytest.mark.parametrize(
    ("kind", "fn", "when", "allowed"),
    CRASH_POINTS,
    ids=[f"{k}-{w}-{f}" for k, f, w, _ in CRASH_POINTS],
)
def test_crash_at_each_step_leaves_before_or_after(
    state_dir: Path, kind: str, fn: str, when: str, allowed: set[str]
) -> None:
    backend = FileBackend(state_dir)
    state = seed()
    for name in ("a", "b", "c"):
        state.resources[f"model.{name}"] = record(name)
    state.serial = 1
    token = backend.write(state, None, [])
    if kind != "append-new-journal":
        state.resources["model.a"] = ResourceRecord(kind="Model", namespace="default", name="a")
        state.serial += 1
        token = backend.write(state, token, ["model.a"])
        assert backend.journal_path.exists()
    before = state.model_copy(deep=True)
    after = state.model_copy(deep=True)
    _next_state(after)

    changed = [] if kind == "compact" else APPEND
    child = FORK.Process(target=_crash_while_writing, args=(str(state_dir), fn, when, changed))
    child.start()
    child.join(30)
    assert child.exitcode == CRASHED

    loaded, read_token = FileBackend(state_dir).read()
    outcome = {before.serial: "before", after.serial: "after"}[loaded.serial if loaded else -1]
    assert outcome in allowed
    assert loaded == (before if outcome == "before" else after)
    assert (read_token == token) == (outcome == "before")

    # and the next run carries on from there, cleaning up what the crash left
    assert loaded is not None
    loaded.resources["model.z"] = record("z")
    loaded.serial += 1
    new_token = FileBackend(state_dir).write(loaded, read_token, ["model.z"])
    assert FileBackend(state_dir).read() == (loaded, new_token)
    assert temp_files(state_dir) == []


# -- kill -9 at random moments --------------------------------------------------------------------


def _write_forever(directory: str, reached: Any) -> None:
    backend = FileBackend(directory)
    state, token = backend.read()
    if state is None:
        state = seed()
    while True:
        changed = advance(state)
        token = backend.write(state, token, changed)
        reached.value = state.serial


def test_kill_9_while_writing_in_a_loop(state_dir: Path) -> None:
    rng = random.Random(2024)
    expected = Expected()
    reached = FORK.Value("q", 0)
    serials = []
    for _ in range(10):
        child = FORK.Process(target=_write_forever, args=(str(state_dir), reached))
        child.start()
        time.sleep(rng.uniform(0.05, 0.4))
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert child.exitcode == -signal.SIGKILL

        state, _ = FileBackend(state_dir).read()  # never an error, torn tail or not
        assert state is not None
        assert state.serial in (reached.value, reached.value + 1)
        assert state == expected.at(state.serial)  # exactly that write's state, never a mix
        serials.append(state.serial)
    assert serials == sorted(serials) and serials[-1] > 2 * 29  # compacted on the way


# -- readers without the lock ---------------------------------------------------------------------


def _write_n(directory: str, count: int) -> None:
    backend = FileBackend(directory)
    state, token = backend.read()
    assert state is not None
    for _ in range(count):
        token = backend.write(state, token, advance(state))


def test_readers_see_a_whole_write_while_a_writer_runs(state_dir: Path) -> None:
    start = seed()
    token = FileBackend(state_dir).write(start, None, [])
    assert token
    writer = FORK.Process(target=_write_n, args=(str(state_dir), 400))
    writer.start()
    expected, reads, last = Expected(), 0, 0
    reader = FileBackend(state_dir)
    while writer.is_alive() or reads == 0:
        state, _ = reader.read()
        assert state is not None and state.serial >= last
        assert state == expected.at(state.serial)
        last, reads = state.serial, reads + 1
    writer.join(30)
    assert writer.exitcode == 0
    assert reader.read()[0] == expected.at(400)
    assert reads > 10
