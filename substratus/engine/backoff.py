"""``Backoff`` and ``retry``: the one way substratus waits before trying something again.

Every retry loop of the runtimes and state backends (GCS requests, Kubernetes API requests,
a build context's upload, a notebook's port-forward, waiting for the state lock) goes through
``retry`` (or, for a loop that is not one call, ``Backoff.delay``). Contracts:

- The n-th delay (n = 1, 2, …) is ``first * multiplier ** (n - 1)``, capped at ``maximum``, then
  scaled by a random factor in ``[1 - jitter, 1 + jitter]`` (so racing clients do not retry in
  step).
- ``retry(call, policy, retryable=…)`` calls ``call`` until it returns; an exception for which
  ``retryable(exc)`` is False propagates at once. A retryable one is retried until ``attempts``
  calls were made or ``deadline`` seconds have passed since the first call (whichever comes
  first; ``None``: no such limit); a sleep never goes past the deadline. Then ``GaveUp`` is raised
  from the last exception, carrying it and the number of calls made.
- ``on_retry(exc, n)`` is called before the n-th sleep (``n`` starting at 1): a caller reports a
  wait once, or notes that an earlier attempt may have landed unseen.
- ``sleep``, ``clock`` and ``rand`` are injectable for tests; by default ``time.sleep`` (looked
  up at each call, so a test that patches it is obeyed), ``time.monotonic`` and
  ``random.uniform``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """How long to wait between attempts, and when to stop (see the module docstring)."""

    first: float = 0.25
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    attempts: int | None = None
    deadline: float | None = None

    def delay(self, n: int, rand: Callable[[float, float], float] = random.uniform) -> float:
        """The delay before the (n+1)-th attempt (``n`` ≥ 1 failures so far), jitter included."""
        base = min(self.first * self.multiplier ** max(0, n - 1), self.maximum)
        return base * rand(1.0 - self.jitter, 1.0 + self.jitter)


class GaveUp(Exception):
    """A retryable failure went on past the attempts or the deadline: ``last`` is the last
    exception, ``attempts`` the number of calls made."""

    def __init__(self, last: BaseException, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempts: {last}")
        self.last = last
        self.attempts = attempts


def retry(
    call: Callable[[], T],
    policy: Backoff,
    *,
    retryable: Callable[[BaseException], bool],
    on_retry: Callable[[BaseException, int], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[float, float], float] = random.uniform,
) -> T:
    """``call()``, retried with ``policy`` while it raises a ``retryable`` exception."""
    start = clock()
    n = 0
    while True:
        n += 1
        try:
            return call()
        except Exception as exc:
            if not retryable(exc):
                raise
            wait = policy.delay(n, rand)
            if policy.deadline is not None:
                remaining = start + policy.deadline - clock()
                if remaining <= 0:
                    raise GaveUp(exc, n) from exc
                wait = min(wait, remaining)
            if policy.attempts is not None and n >= policy.attempts:
                raise GaveUp(exc, n) from exc
            if on_retry is not None:
                on_retry(exc, n)
            (sleep or time.sleep)(wait)
