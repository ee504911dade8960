"""Waiting for a state lock, for any ``Backend`` (``--lock-timeout``).

``lock_with_timeout`` retries ``backend.lock(info)`` while it raises ``LockHeld`` with
``engine.backoff`` (``WAIT``: the delay starts at 0.25 s and doubles up to 2 s, each with
±20 % jitter, so racing waiters do not retry in step), never sleeping past the deadline.
``on_wait(holder)`` is called once, the first time it has to wait (the CLI prints "waiting for
the state lock held by …"); ``every_wait()`` before each wait (the CLI checks for a stop signal
there). When the timeout is used up the last ``LockHeld`` is re-raised. A
timeout of 0 means one attempt. Other errors propagate at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from substratus.engine.backend import Backend, LockHeld, LockInfo
from substratus.engine.backoff import Backoff, GaveUp, retry

WAIT = Backoff(first=0.25, maximum=2.0, jitter=0.2)


def lock_with_timeout(
    backend: Backend,
    info: LockInfo,
    timeout_s: float,
    on_wait: Callable[[LockInfo], None] | None = None,
    *,
    every_wait: Callable[[], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Take the lock, waiting up to ``timeout_s`` seconds; returns the lock id."""

    def waiting(exc: BaseException, n: int) -> None:
        if every_wait is not None:
            every_wait()
        if n == 1 and on_wait is not None and isinstance(exc, LockHeld):
            on_wait(exc.holder)

    try:
        return retry(
            lambda: backend.lock(info),
            replace(WAIT, deadline=max(0.0, timeout_s)),
            retryable=lambda exc: isinstance(exc, LockHeld),
            on_retry=waiting,
            sleep=sleep,
            clock=clock,
        )
    except GaveUp as exc:
        raise exc.last from None
