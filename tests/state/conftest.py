"""Fixtures for the state backend tests: a backend in a temp dir and a state factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from substratus.engine.statefile import ResourceRecord, StateFile
from substratus.state.local import FileBackend

StateFactory = Callable[..., StateFile]


def build_state(*names: str, serial: int = 0) -> StateFile:
    state = StateFile.new()
    state.serial = serial
    for name in names:
        state.resources[f"model.{name}"] = ResourceRecord(
            kind="Model", namespace="default", name=name, digest=f"sha256:{name}"
        )
    return state


@pytest.fixture
def make_state() -> StateFactory:
    return build_state


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def backend(state_dir: Path) -> FileBackend:
    return FileBackend(f"file://{state_dir}")
