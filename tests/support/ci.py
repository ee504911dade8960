"""What a test needs from the machine: skipped locally when it is missing, a failure in CI
(``CI`` set, as GitHub Actions sets it), because no test may be skipped in CI (DESIGN §11)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip the test with ``reason`` here; fail it in CI."""
    if in_ci():
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)
