"""Fixtures for the gs:// artifact store tests: the emulator (behind the fault proxy), runtimes
with their own working directories (one per simulated machine), a build context, cleanup."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.runtime import RunContext
from substratus.runtimes.local import LocalRuntime
from tests.runtimes.local.helpers import (
    LOADER,
    SERVER,
    kill_leftovers,
    local_build_spec,
    make_context,
    request,
)
from tests.support.gcs import GcsServer

from .helpers import MANY

MakeRuntime = Callable[..., LocalRuntime]


@pytest.fixture(autouse=True)
def _cleanup_processes(tmp_path: Path) -> Iterator[None]:
    yield
    kill_leftovers(tmp_path)


@pytest.fixture
def emulator(gcs_server: GcsServer, monkeypatch: pytest.MonkeyPatch) -> GcsServer:
    """The emulator, with ``STORAGE_EMULATOR_HOST`` pointing the runtime's client at it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    return gcs_server


@pytest.fixture
def store_url(emulator: GcsServer, gcs_bucket: str) -> str:
    return f"gs://{gcs_bucket}/artifacts"


@pytest.fixture
def make_runtime(tmp_path: Path, emulator: GcsServer) -> MakeRuntime:
    """``make_runtime(machine, artifacts_url)``: a runtime whose workdir is ``tmp_path/machine``
    (default store: ``file://`` under it)."""

    def make(machine: str = "a", artifacts: str | None = None) -> LocalRuntime:
        return LocalRuntime(tmp_path / machine / ".substratus", artifacts, poll_interval=0.05)

    return make


@pytest.fixture
def gs_runtime(make_runtime: MakeRuntime, store_url: str) -> LocalRuntime:
    return make_runtime("a", store_url)


@pytest.fixture
def built(tmp_path: Path) -> dict[str, Any]:
    """The outputs of a build of the test workloads (usable by every runtime)."""
    context = make_context(
        tmp_path / "src", {"load.py": LOADER, "serve.py": SERVER, "many.py": MANY}
    )
    builder = LocalRuntime(tmp_path / "builder" / ".substratus", poll_interval=0.05)
    return builder.apply(request("build", "src", local_build_spec(context)), RunContext())
