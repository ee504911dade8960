"""The state lock from the command line: taken for the duration of a block (unless
``--no-lock``), waited for up to ``--lock-timeout``, reported clearly when held by another run,
and, for a backend whose lock has a lease, renewed on a daemon thread while the block runs."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from substratus.cli import signals
from substratus.cli.options import parse_duration
from substratus.engine.backend import (
    Backend,
    LeaseRenewal,
    LockHeld,
    LockInfo,
    LockLost,
    LockNotFound,
    LockWatch,
    TakesOver,
    ci_context,
)
from substratus.engine.diagnostic import DiagnosticError, fail

LOCK_HELD = "Error acquiring the state lock"  # the summary of a lock someone else holds


@contextmanager
def locked(backend: Backend, operation: str, enabled: bool, timeout: str) -> Iterator[LockWatch]:
    """Hold the state lock for the block (unless ``--no-lock``).

    With a backend whose lock has a lease (``LeaseRenewal``), a daemon thread renews it every
    third of the lease while the block runs and is stopped before the lock is released; a lock
    found taken over (or removed) is reported loudly, once, and through the ``LockWatch`` the
    block gets (the walker then stops). A lock taken over from a holder that is gone (an expired
    lease, a process of this host that no longer runs) is reported when acquired."""
    watch = LockWatch()
    if not enabled:
        yield watch
        return
    from substratus.state import lock_with_timeout

    info = LockInfo(operation=operation, ci=ci_context())
    waited: list[bool] = []

    def on_wait(holder: LockInfo) -> None:
        if not waited:
            waited.append(True)
            print(
                f"Acquiring state lock. Held by {holder.who} ({holder.operation}) since "
                f"{holder.created}; waiting up to {timeout}...",
                file=sys.stderr,
            )

    signals.check()
    try:
        lock_id = lock_with_timeout(
            backend, info, parse_duration(timeout), on_wait, every_wait=signals.check
        )
    except LockHeld as held:
        h = held.holder
        raise fail(
            LOCK_HELD,
            f"The state is locked by {h.who} (pid {h.pid}) for {h.operation} since {h.created}."
            f"\n\nLock Info:\n{h.describe()}\n\n"
            + (f"{held.note}\n\n" if held.note else "")
            + "substratus acquires a state lock to protect the state from being written by "
            "multiple users at the same time. Wait for that operation to finish (or pass "
            "--lock-timeout 5m to wait), or, if its holder is gone, remove the lock with:\n\n"
            f"  substratus force-unlock {h.id}",
        ) from held
    if isinstance(backend, TakesOver) and backend.takeover is not None:
        _took_over(backend.takeover)
    renewal = _Renewal(backend, lock_id, watch) if isinstance(backend, LeaseRenewal) else None
    try:
        yield watch
    finally:
        if renewal is not None:
            renewal.stop()
        _release(backend, lock_id)


def _took_over(stale: LockInfo) -> None:
    """Say whose abandoned lock was taken over: an expired lease, or a process that is gone."""
    if stale.expires:
        print(
            f"Warning: took over the expired lock of {stale.who} (pid {stale.pid}, "
            f"{stale.operation} since {stale.created}; its lease ended {stale.expires}): "
            "that run stopped renewing it (crashed, killed or cut off).",
            file=sys.stderr,
        )
        return
    print(
        f"Taking over the state lock of process {stale.pid} on this host, which is gone "
        f"({stale.who}, {stale.operation} since {stale.created}): that run crashed or was "
        "killed. What it left running is recorded in the state; an apply adopts it.",
        file=sys.stderr,
    )


def _release(backend: Backend, lock_id: str) -> None:
    """Unlock; a lock already gone is a warning. When the block is failing already (the state
    could not be written), a lock that cannot be removed either is said once, beside that error
    rather than instead of it."""
    failing = sys.exc_info()[1] is not None
    try:
        backend.unlock(lock_id)
    except LockNotFound as exc:
        print(f"\nWarning: the state lock was no longer held: {exc}", file=sys.stderr)
    except DiagnosticError as exc:
        if not failing:
            raise
        summary = exc.diagnostics[0].summary if exc.diagnostics else str(exc)
        print(
            f"\nWarning: {summary}. The lock stays; the next substratus run on this host "
            f"takes it over (this process will be gone), or remove it with `substratus "
            f"force-unlock {lock_id}`.",
            file=sys.stderr,
        )


class _Renewal:
    """Renews a leased lock every third of its lease on a daemon thread, until ``stop``."""

    def __init__(self, backend: LeaseRenewal, lock_id: str, watch: LockWatch) -> None:
        self.backend, self.lock_id, self.watch = backend, lock_id, watch
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lock-renewal", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(max(0.05, self.backend.lease_seconds / 3)):
            try:
                self.backend.renew(self.lock_id)
            except LockNotFound as exc:
                print(
                    f"\n!!! WARNING: the state lock {self.lock_id} was LOST ({exc}). Another run "
                    "may change the state now; this run's writes stay compare-and-swap and fail "
                    "rather than overwrite it. !!!",
                    file=sys.stderr,
                )
                self.watch.lose(LockLost(str(exc)))
                return
            except Exception as exc:  # failing past the retries: try again next time
                print(f"Warning: could not renew the state lock: {exc}", file=sys.stderr)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
