"""FileBackend locks with real processes, and lock_with_timeout."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from substratus.engine.backend import Backend, LockHeld, LockInfo, LockNotFound
from substratus.engine.diagnostic import DiagnosticError
from substratus.state import local
from substratus.state.local import FileBackend, lock_with_timeout

FORK = multiprocessing.get_context("fork")


# -- helpers run in child processes (fork: module-level, picklable arguments) -------------------


def _race(directory: str, round_no: int, barrier: Any, results: Any) -> None:
    backend = FileBackend(directory)
    barrier.wait()
    try:
        lock_id = backend.lock(LockInfo(operation=f"race-{round_no}"))
        results.put(("won", lock_id, os.getpid()))
    except LockHeld as exc:
        results.put(("held", exc.holder.id, exc.holder.pid))


def _lock_and_exit(directory: str, results: Any) -> None:
    results.put(FileBackend(directory).lock(LockInfo(operation="apply")))


def _hold(directory: str, locked: Any, release: Any, hold_s: float) -> None:
    backend = FileBackend(directory)
    lock_id = backend.lock(LockInfo(operation="apply"))
    locked.set()
    release.wait(hold_s)
    backend.unlock(lock_id)


@contextlib.contextmanager
def holder_process(directory: Path, hold_s: float) -> Iterator[tuple[Any, Any]]:
    """A child that holds the lock until ``release`` is set or ``hold_s`` passes, then unlocks."""
    locked, release = FORK.Event(), FORK.Event()
    proc = FORK.Process(target=_hold, args=(str(directory), locked, release, hold_s))
    proc.start()
    try:
        assert locked.wait(120), "holder did not take the lock"
        yield proc, release
    finally:
        release.set()
        proc.join(120)
    assert proc.exitcode == 0


# -- exclusivity across processes ----------------------------------------------------------------


@pytest.mark.parametrize("guarded", [True, False], ids=["flock+excl", "excl-only"])
def test_exactly_one_process_wins_each_round(
    state_dir: Path, guarded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not guarded:  # O_EXCL alone must also be exclusive (e.g. where flock is unavailable)

        @contextlib.contextmanager
        def no_guard(directory: Path) -> Iterator[bool]:
            yield False

        monkeypatch.setattr(local, "dir_guard", no_guard)
    contenders, rounds = 8, 6
    for round_no in range(rounds):
        barrier, results = FORK.Barrier(contenders), FORK.Queue()
        procs = [
            FORK.Process(target=_race, args=(str(state_dir), round_no, barrier, results))
            for _ in range(contenders)
        ]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        winners = [o for o in outcomes if o[0] == "won"]
        assert len(winners) == 1, outcomes
        _, winner_id, winner_pid = winners[0]
        for kind, holder_id, holder_pid in outcomes:
            if kind == "held" and guarded:  # with the guard nobody sees a half-written lock
                assert (holder_id, holder_pid) == (winner_id, winner_pid)
            elif kind == "held":
                assert holder_id == winner_id or holder_id.startswith("invalid-")
        backend = FileBackend(state_dir)
        current = backend.current_lock()
        assert current is not None and current.operation == f"race-{round_no}"
        backend.force_unlock(winner_id)
        assert backend.current_lock() is None


def test_lock_held_carries_holder_info(backend: FileBackend) -> None:
    info = LockInfo(operation="apply", ci={"run_url": "https://ci/run/1", "pr": "7"})
    lock_id = backend.lock(info)
    assert info.id == ""  # the caller's record is not mutated
    stored = json.loads(backend.lock_path.read_text())
    assert stored["id"] == lock_id and stored["path"] == str(backend.lock_path)

    with pytest.raises(LockHeld) as held:
        FileBackend(backend.directory).lock(LockInfo(operation="plan"))
    holder = held.value.holder
    assert holder.id == lock_id
    assert holder.operation == "apply"
    assert holder.pid == os.getpid()
    assert holder.who == info.who and holder.who.endswith("@" + socket.gethostname())
    assert holder.ci == {"run_url": "https://ci/run/1", "pr": "7"}
    assert holder.path == str(backend.lock_path)
    assert held.value.note == ""  # a live holder is not called stale
    assert lock_id in holder.describe()


def test_other_workspace_is_not_blocked(state_dir: Path) -> None:
    FileBackend(state_dir).lock(LockInfo(operation="apply"))
    FileBackend(state_dir, "staging").lock(LockInfo(operation="apply"))


def _dead_holder(state_dir: Path) -> tuple[str, int]:
    """The id and pid of a lock left by a child process of this host that is gone."""
    results = FORK.Queue()
    child = FORK.Process(target=_lock_and_exit, args=(str(state_dir), results))
    child.start()
    lock_id = results.get(timeout=120)
    child.join(120)  # reaped: the pid no longer exists
    assert child.pid is not None
    return lock_id, child.pid


def test_a_lock_whose_holder_is_gone_is_taken_over(state_dir: Path) -> None:
    lock_id, pid = _dead_holder(state_dir)
    backend = FileBackend(state_dir)
    new_id = backend.lock(LockInfo(operation="apply"))
    assert backend.takeover is not None
    assert (backend.takeover.id, backend.takeover.pid) == (lock_id, pid)
    current = backend.current_lock()
    assert current is not None and (current.id, current.pid) == (new_id, os.getpid())
    with pytest.raises(LockHeld):  # and it is held again, by a live process
        FileBackend(state_dir).lock(LockInfo(operation="plan"))
    backend.unlock(new_id)
    backend.lock(LockInfo(operation="apply"))
    assert backend.takeover is None


def _take(directory: str, barrier: Any, results: Any) -> None:
    backend = FileBackend(directory)
    barrier.wait()
    try:
        backend.lock(LockInfo(operation="race"))
        taken = backend.takeover.id if backend.takeover else ""
        results.put(("won", taken))
    except LockHeld as exc:
        results.put(("held", exc.holder.pid))


def test_only_one_of_many_takes_over_a_lock_whose_holder_is_gone(state_dir: Path) -> None:
    lock_id, _pid = _dead_holder(state_dir)
    contenders = 6
    barrier, results = FORK.Barrier(contenders), FORK.Queue()
    procs = [
        FORK.Process(target=_take, args=(str(state_dir), barrier, results))
        for _ in range(contenders)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=20) for _ in procs]
    for p in procs:
        p.join(10)
    assert sorted(o[0] for o in outcomes) == ["held"] * (contenders - 1) + ["won"], outcomes
    assert ("won", lock_id) in outcomes


def test_without_flock_a_lock_whose_holder_is_gone_is_reported(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextlib.contextmanager
    def no_guard(directory: Path) -> Iterator[bool]:
        yield False

    monkeypatch.setattr(local, "dir_guard", no_guard)
    lock_id, pid = _dead_holder(state_dir)
    backend = FileBackend(state_dir)
    with pytest.raises(LockHeld) as held:
        backend.lock(LockInfo(operation="apply"))
    assert held.value.holder.pid == pid
    assert "no longer running" in held.value.note
    assert f"substratus force-unlock {lock_id}" in held.value.note
    removed = backend.force_unlock(lock_id)
    assert removed.pid == pid
    backend.lock(LockInfo(operation="apply"))


def test_holder_on_another_host_is_never_called_dead(backend: FileBackend) -> None:
    backend.directory.mkdir(parents=True)
    other = LockInfo(operation="apply", id="abc", who="bob@elsewhere", pid=2**22 + 12345)
    backend.lock_path.write_text(json.dumps(other.to_json()))
    with pytest.raises(LockHeld) as held:
        backend.lock(LockInfo(operation="plan"))
    assert held.value.holder.who == "bob@elsewhere"
    assert held.value.note == ""


@pytest.mark.parametrize("content", [b"", b'{"operation": "app', b"[]", b'{"id": ""}'])
def test_half_written_lock_is_holder_unknown(backend: FileBackend, content: bytes) -> None:
    backend.directory.mkdir(parents=True)
    backend.lock_path.write_bytes(content)
    with pytest.raises(LockHeld) as held:
        backend.lock(LockInfo(operation="apply"))
    holder = held.value.holder
    assert holder.who == "unknown" and holder.id.startswith("invalid-")
    assert f"force-unlock {holder.id}" in held.value.note
    assert backend.current_lock() == holder
    assert backend.force_unlock(holder.id).id == holder.id
    backend.lock(LockInfo(operation="apply"))


def test_lock_file_write_failure_removes_the_lock(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def enospc(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", enospc)
    with pytest.raises(DiagnosticError, match="could not write the lock file"):
        backend.lock(LockInfo(operation="apply"))
    monkeypatch.undo()
    assert not backend.lock_path.exists()


def test_lock_permission_denied_is_a_diagnostic(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.directory.mkdir(parents=True)
    real_open = os.open

    def denied(path: Any, flags: int, mode: int = 0o777) -> int:
        if str(path) == str(backend.lock_path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(DiagnosticError) as info:
        backend.lock(LockInfo(operation="apply"))
    detail = info.value.diagnostics[0]
    assert str(backend.lock_path) in detail.summary and "permissions" in detail.detail


# -- unlock / force-unlock -----------------------------------------------------------------------


def test_unlock(backend: FileBackend) -> None:
    lock_id = backend.lock(LockInfo(operation="apply"))
    with pytest.raises(LockNotFound, match=f"has id '{lock_id}'"):
        backend.unlock("not-the-id")
    assert backend.lock_path.exists()
    backend.unlock(lock_id)
    assert backend.current_lock() is None
    with pytest.raises(LockNotFound, match="no lock"):
        backend.unlock(lock_id)


def test_stale_unlock_cannot_remove_a_newer_lock(backend: FileBackend) -> None:
    old = backend.lock(LockInfo(operation="apply"))
    backend.force_unlock(old)
    new = FileBackend(backend.directory).lock(LockInfo(operation="apply"))
    with pytest.raises(LockNotFound):
        backend.unlock(old)
    current = backend.current_lock()
    assert current is not None and current.id == new


def test_force_unlock(backend: FileBackend) -> None:
    with pytest.raises(LockNotFound, match="there is no lock on workspace 'default'"):
        backend.force_unlock("whatever")
    lock_id = backend.lock(LockInfo(operation="apply"))
    with pytest.raises(LockNotFound) as wrong:
        backend.force_unlock("whatever")
    assert lock_id in str(wrong.value) and "whatever" in str(wrong.value)
    removed = backend.force_unlock(lock_id)
    assert removed.id == lock_id and removed.operation == "apply"
    assert not backend.lock_path.exists()


# -- lock_with_timeout ---------------------------------------------------------------------------


def test_waits_then_succeeds_when_holder_unlocks(state_dir: Path) -> None:
    waits: list[LockInfo] = []
    with holder_process(state_dir, hold_s=120) as (proc, release):

        def on_wait(holder: LockInfo) -> None:  # found it held: now the holder lets go
            waits.append(holder)
            release.set()

        lock_id = lock_with_timeout(
            FileBackend(state_dir), LockInfo(operation="apply"), 120, on_wait
        )
        assert release.is_set()  # it waited: the holder only unlocks once told so
    assert [w.pid for w in waits] == [proc.pid]  # on_wait called exactly once
    current = FileBackend(state_dir).current_lock()
    assert current is not None and current.id == lock_id and current.pid == os.getpid()


def test_times_out_with_last_lock_held(state_dir: Path) -> None:
    waits: list[LockInfo] = []
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    with holder_process(state_dir, hold_s=120) as (proc, _release):
        start = time.monotonic()
        with pytest.raises(LockHeld) as held:
            lock_with_timeout(
                FileBackend(state_dir), LockInfo("apply"), 1.0, waits.append, sleep=sleep
            )
        elapsed = time.monotonic() - start
    # it waited the whole timeout and gave up then: no sleep went past the deadline (the
    # elapsed time itself also counts the attempts, as long as a loaded machine makes them)
    assert elapsed >= 1.0
    assert slept and sum(slept) <= 1.0 + 1e-6
    assert held.value.holder.pid == proc.pid
    assert len(waits) == 1


def test_zero_timeout_tries_once_without_waiting(backend: FileBackend) -> None:
    backend.lock(LockInfo(operation="apply"))
    waits: list[LockInfo] = []
    with pytest.raises(LockHeld):
        lock_with_timeout(FileBackend(backend.directory), LockInfo("plan"), 0, waits.append)
    assert waits == []


class _AlwaysHeld:
    url, workspace = "fake://", "default"

    def __init__(self) -> None:
        self.attempts = 0

    def lock(self, info: LockInfo) -> str:
        self.attempts += 1
        raise LockHeld(LockInfo(operation="apply", id=f"h{self.attempts}"))


def test_backoff_schedule() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    fake = _AlwaysHeld()
    with pytest.raises(LockHeld) as held:
        lock_with_timeout(
            cast(Backend, fake), LockInfo("apply"), 7.0, sleep=sleep, clock=lambda: now[0]
        )
    nominal = [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    *body, last = sleeps
    for got, want in zip(body, nominal, strict=False):
        assert want * 0.8 - 1e-9 <= got <= want * 1.2 + 1e-9
    assert 0 < last <= nominal[len(body)] * 1.2 + 1e-9
    assert sum(sleeps) == pytest.approx(7.0)  # the last sleep is clipped to the deadline
    assert held.value.holder.id == f"h{fake.attempts}"  # the last LockHeld is re-raised
    assert fake.attempts == len(sleeps) + 1
