"""The GCS backend when GCS misbehaves: transient faults (retried safely, thanks to the
preconditions), responses lost after the write landed, and the errors a user must fix (missing
bucket, permission denied, no credentials) as one clear message each."""

from __future__ import annotations

from pathlib import Path

import pytest

from substratus.engine.backend import LockInfo
from substratus.engine.diagnostic import DiagnosticError
from substratus.state.gcs import GcsBackend
from substratus.state.gcs.errors import NO_CREDENTIALS
from tests.state.gcs.conftest import MakeBackend
from tests.state.gcs.helpers import add, apply_like, cli, state_of, text
from tests.support.gcs import GcsServer


def test_fifty_writes_through_ten_percent_faults(
    make_backend: MakeBackend, emulator: GcsServer
) -> None:
    emulator.proxy.set_faults(
        rate=0.08, statuses=(503, 429, 500), delay=0.05, delay_rate=0.1, reset_rate=0.02, seed=7
    )
    state = apply_like(make_backend(), 25)  # 50 writes
    emulator.proxy.clear_faults()
    assert emulator.proxy.stats()["faults_by_kind"]["status"] > 5
    assert make_backend().read()[0] == state


def test_responses_lost_after_the_write_landed(
    make_backend: MakeBackend, emulator: GcsServer
) -> None:
    """The retry of a create that did land gets 412: recognised as our own write by its nonce
    (journal entries, seals, bases, the lock), and a delete that landed is done."""
    emulator.proxy.set_faults(rate=0.0, lost_response_rate=0.25, seed=11)
    state = apply_like(make_backend(), 10)
    emulator.proxy.clear_faults()
    assert emulator.proxy.stats()["faults_by_kind"]["lost_response"] > 5
    got, _ = make_backend().read()
    assert got == state
    assert make_backend().current_lock() is None


def test_giving_up_after_the_deadline(make_backend: MakeBackend, emulator: GcsServer) -> None:
    emulator.proxy.set_faults(rate=1.0, statuses=(503,))
    with pytest.raises(DiagnosticError, match="GCS kept failing") as info:
        make_backend(deadline_seconds=0.5).read()
    assert "503" in text(info.value)


def test_a_missing_bucket(emulator: GcsServer) -> None:
    backend = GcsBackend("gs://no-such-bucket-here/state")
    for attempt in (backend.read, lambda: backend.lock(LockInfo(operation="apply"))):
        with pytest.raises(DiagnosticError) as info:
            attempt()
        message = text(info.value)
        assert "gs://no-such-bucket-here of the state backend does not exist" in message
        assert "gcloud storage buckets create gs://no-such-bucket-here" in message


@pytest.mark.parametrize(
    ("methods", "permission", "call"),
    [
        (["GET"], "storage.objects.list", "read"),
        (["POST"], "storage.objects.create", "write"),
        (["DELETE"], "storage.objects.delete", "unlock"),
    ],
)
def test_permission_denied_names_the_permission_and_the_role(
    make_backend: MakeBackend, emulator: GcsServer, methods: list[str], permission: str, call: str
) -> None:
    backend = make_backend()
    lock_id = backend.lock(LockInfo(operation="apply"))
    emulator.proxy.set_faults(rate=1.0, statuses=(403,), only_methods=methods)
    with pytest.raises(DiagnosticError) as info:
        if call == "read":
            backend.read()
        elif call == "write":
            backend.write(state_of("a"), None, [])
        else:
            backend.unlock(lock_id)
    message = text(info.value)
    assert f"needs {permission}" in message
    assert "roles/storage.objectAdmin" in message and "add-iam-policy-binding" in message


def test_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(DiagnosticError, match="No Google Cloud credentials"):
        GcsBackend("gs://team-state/prod").read()


def test_the_cli_prints_one_clear_message(tmp_path: Path) -> None:
    env: dict[str, str | None] = {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "none.json")}
    result = cli(None, tmp_path, "state", "list", "--state", "gs://team-state/p", env=env)
    assert result.returncode == 1
    assert NO_CREDENTIALS in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("method", "pattern"),
    [
        ("POST", r"\.journal/.*\.json$"),  # an entry (and the seal of a compaction)
        ("POST", r"default\.json$"),  # a compaction
        ("POST", r"\.lock$"),  # taking the lock
        ("DELETE", r"\.lock$"),  # releasing it
    ],
)
def test_a_lost_response_to_each_kind_of_write(
    make_backend: MakeBackend, emulator: GcsServer, method: str, pattern: str
) -> None:
    backend = make_backend()
    state = state_of("a")
    backend.write(state, None, [])
    emulator.proxy.set_faults(
        rate=0.0, lost_response_rate=1.0, only_methods=[method], object_regex=pattern, max_faults=1
    )
    lock_id = backend.lock(LockInfo(operation="apply"))
    token = backend.read()[1]
    token = backend.write(state, token, add(state, "b"))
    token = backend.write(state, token, [])
    backend.unlock(lock_id)
    assert emulator.proxy.stats()["faults_by_kind"]["lost_response"] == 1
    assert make_backend().read() == (state, token)
    assert backend.current_lock() is None
