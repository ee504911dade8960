"""Bounded waiting for tests: ``wait_for(check, what)`` calls ``check`` until it returns
something truthy and returns that, or fails the test after ``timeout`` seconds naming ``what``
and the last value seen. The timeout is a bound for a loaded machine, not an expectation: the
wait ends as soon as the check holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_for(
    check: Callable[[], Any], what: str, timeout: float = 120.0, interval: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last value: {last!r}")
