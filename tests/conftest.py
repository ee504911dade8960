from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine import Harness
from tests.support.gcs import gcs_bucket, gcs_server  # noqa: F401  (session-wide emulator)
from tests.support.github_server import github_server  # noqa: F401  (a fake GitHub per test)
from tests.support.kube import kube_cluster  # noqa: F401  (session-wide control plane)

# Test jobs count their runs in $RUNS_LOG and some write the state in $STATE_DIR: an operator
# passes such variables to workloads by name (a workload sees nothing else of the operator's
# environment, runtimes.contract). Tests that check the environment set their own list.
os.environ.setdefault("SUBSTRATUS_PASS_ENV", "RUNS_LOG,STATE_DIR")


@pytest.fixture(autouse=True, scope="session")
def _stop_signals_not_ignored() -> Iterator[None]:
    """The CLIs the tests start get Ctrl-C, SIGTERM and SIGHUP as from a terminal: a suite run
    under ``nohup`` or in a script's background inherits some of them as ignored, and a CLI
    rightly keeps an ignored signal ignored (tests that need that set it up themselves)."""
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_IGN:
            default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            saved[sig] = signal.signal(sig, default)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)
