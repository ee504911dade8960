"""Waiting for a state lock, for any ``Backend`` (``--lock-timeout``).

``lock_with_timeout`` retries ``backend.lock(info)`` while it raises ``LockHeld``: the delay starts
at 0.25 s and doubles up to 2 s, each with ±20 % jitter (so racing waiters do not retry in step),
never sleeping past the deadline. ``on_wait(holder)`` is called once, the first time it has to wait
(the CLI prints "waiting for the state lock held by …"). When the timeout is used up the last
``LockHeld`` is re-raised. A timeout of 0 means one attempt. Other errors propagate at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from substratus.engine.backend import Backend, LockHeld, LockInfo

FIRST_DELAY_S = 0.25
MAX_DELAY_S = 2.0
JITTER = 0.2


def lock_with_timeout(
    backend: Backend,
    info: LockInfo,
    timeout_s: float,
    on_wait: Callable[[LockInfo], None] | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Take the lock, waiting up to ``timeout_s`` seconds; returns the lock id."""
    deadline = clock() + max(0.0, timeout_s)
    delay = FIRST_DELAY_S
    waited = False
    while True:
        try:
            return backend.lock(info)
        except LockHeld as exc:
            remaining = deadline - clock()
            if remaining <= 0:
                raise
            if not waited:
                waited = True
                if on_wait is not None:
                    on_wait(exc.holder)
            sleep(min(delay * random.uniform(1 - JITTER, 1 + JITTER), remaining))
            delay = min(delay * 2, MAX_DELAY_S)
