from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.engine import Harness
from tests.support.gcs import gcs_bucket, gcs_server  # noqa: F401  (session-wide emulator)
from tests.support.github_server import github_server  # noqa: F401  (a fake GitHub per test)
from tests.support.kube import kube_cluster  # noqa: F401  (session-wide control plane)


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)
