from __future__ import annotations

import os
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


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)
