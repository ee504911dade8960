"""Fixtures for the GCS state backend tests: the emulator behind the fault proxy (from
``tests.support.gcs``), a state URL in a fresh bucket, and backends on it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from substratus.state.gcs import GcsBackend
from tests.support.gcs import GcsServer

MakeBackend = Callable[..., GcsBackend]


@pytest.fixture
def emulator(gcs_server: GcsServer, monkeypatch: pytest.MonkeyPatch) -> GcsServer:
    """The emulator, with ``STORAGE_EMULATOR_HOST`` pointing the backend's client at it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    return gcs_server


@pytest.fixture
def state_url(emulator: GcsServer, gcs_bucket: str) -> str:
    return f"gs://{gcs_bucket}/team/state"


@pytest.fixture
def make_backend(state_url: str) -> MakeBackend:
    """``make_backend(workspace="default", lease_seconds=60, deadline_seconds=20)``."""

    def make(
        workspace: str = "default", lease_seconds: float = 60.0, deadline_seconds: float = 20.0
    ) -> GcsBackend:
        return GcsBackend(
            state_url, workspace, lease_seconds=lease_seconds, deadline_seconds=deadline_seconds
        )

    return make


@pytest.fixture
def backend(make_backend: MakeBackend) -> GcsBackend:
    return make_backend()
