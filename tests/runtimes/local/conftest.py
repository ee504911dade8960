"""Fixtures for the local runtime tests: a runtime in tmp_path, a build context, cleanup."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.runtime import RunContext
from substratus.runtimes.local import LocalRuntime

from .helpers import LOADER, PY, SERVER, kill_leftovers, local_build_spec, make_context, request


@pytest.fixture(autouse=True)
def _cleanup_processes(tmp_path: Path) -> Iterator[None]:
    yield
    kill_leftovers(tmp_path)


@pytest.fixture
def runtime(tmp_path: Path) -> LocalRuntime:
    return LocalRuntime(
        workdir=tmp_path / ".substratus",
        artifacts_url=(tmp_path / "artifacts").as_uri(),
        poll_interval=0.05,
    )


@pytest.fixture
def context(tmp_path: Path) -> Path:
    """A build context with the test workloads."""
    return make_context(
        tmp_path / "src",
        {
            "load.py": LOADER,
            "serve.py": SERVER,
            "notebook.sh": f"#!/bin/sh\nexec {PY} serve.py\n",
        },
    )


@pytest.fixture
def built(runtime: LocalRuntime, context: Path) -> dict[str, Any]:
    """The outputs of the build of ``context``, to pass as ``inputs["build"]``."""
    spec = local_build_spec(context)
    return runtime.apply(request("build", "src", spec), RunContext())


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    path = tmp_path / "weights"
    path.mkdir()
    (path / "weights.bin").write_text("w")
    return path
