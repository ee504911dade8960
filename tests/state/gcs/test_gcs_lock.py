"""The GCS lock against the emulator (the proxy enforces the DELETE/PATCH preconditions the
emulator ignores): generation ids, holder info, lease, renewal, takeover, force-unlock."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from substratus.cli.locking import locked
from substratus.engine.backend import LeaseRenewal, LockHeld, LockInfo, LockNotFound, ci_context
from substratus.engine.diagnostic import DiagnosticError
from substratus.state.gcs import GcsBackend
from tests.state.gcs.conftest import MakeBackend
from tests.state.gcs.helpers import add, objects, outlive_lock, state_of, worker
from tests.support.gcs import GcsServer
from tests.support.waiting import wait_for

CI = {
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "team/ml",
    "GITHUB_RUN_ID": "42",
    "GITHUB_REF": "refs/pull/7/merge",
}


def lock_blob(server: GcsServer, backend: GcsBackend) -> dict[str, object]:
    blob = server.client().bucket(backend.location.bucket).get_blob(backend.names.lock)
    assert blob is not None
    return {
        "generation": str(blob.generation),
        "metageneration": blob.metageneration,
        "metadata": dict(blob.metadata or {}),
        "body": json.loads(blob.download_as_bytes()),
    }


@pytest.fixture
def ci_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in CI.items():
        monkeypatch.setenv(key, value)
    yield


def test_lock_id_is_the_generation_and_the_holder_is_recorded(
    backend: GcsBackend, make_backend: MakeBackend, emulator: GcsServer, ci_env: None
) -> None:
    assert isinstance(backend, LeaseRenewal)
    lock_id = backend.lock(LockInfo(operation="apply", ci=ci_context()))
    stored = lock_blob(emulator, backend)
    assert stored["generation"] == lock_id
    body = stored["body"]
    assert isinstance(body, dict)
    assert body["operation"] == "apply" and body["expires"]
    assert body["ci"] == {"run_url": "https://github.com/team/ml/actions/runs/42", "pr": "7"}
    assert body["path"] == f"{backend.url}/default.lock"
    with pytest.raises(LockHeld) as info:
        make_backend().lock(LockInfo(operation="plan"))
    holder = info.value.holder
    assert (holder.id, holder.operation, holder.ci["pr"]) == (lock_id, "apply", "7")
    assert holder.expires and "lease expires" in info.value.note
    current = make_backend().current_lock()
    assert current is not None and current.id == lock_id
    backend.unlock(lock_id)
    assert "default.lock" not in objects(emulator, backend)
    assert backend.current_lock() is None


def test_unlock_removes_only_its_own_lock(backend: GcsBackend, make_backend: MakeBackend) -> None:
    first = backend.lock(LockInfo(operation="apply"))
    backend.unlock(first)
    second = make_backend().lock(LockInfo(operation="apply"))
    with pytest.raises(LockNotFound, match=f"is now {second}"):
        backend.unlock(first)  # a stale unlock never removes the newer lock
    with pytest.raises(LockNotFound, match="digits only"):
        backend.unlock("not-a-generation")
    assert backend.current_lock() is not None


def test_force_unlock(backend: GcsBackend, make_backend: MakeBackend) -> None:
    with pytest.raises(LockNotFound, match="there is no lock"):
        backend.force_unlock("123")
    lock_id = make_backend().lock(LockInfo(operation="apply"))
    with pytest.raises(LockNotFound, match=f"is now {lock_id}"):
        backend.force_unlock(str(int(lock_id) + 1))
    removed = backend.force_unlock(lock_id)
    assert removed.id == lock_id and removed.operation == "apply"
    assert backend.current_lock() is None


def test_renewal_keeps_the_id_and_extends_the_lease(
    backend: GcsBackend, emulator: GcsServer
) -> None:
    lock_id = backend.lock(LockInfo(operation="apply"))
    before = lock_blob(emulator, backend)
    backend.renew(lock_id)
    backend.renew(lock_id)
    after = lock_blob(emulator, backend)
    assert after["generation"] == lock_id
    assert after["metageneration"] == 3  # each renewal is one metadata update
    assert isinstance(before["metadata"], dict) and isinstance(after["metadata"], dict)
    assert after["metadata"]["expires"] > before["metadata"]["expires"]
    backend.unlock(lock_id)
    with pytest.raises(LockNotFound):
        backend.renew(lock_id)


def test_an_expired_lock_is_taken_over_and_its_holder_reported(
    make_backend: MakeBackend,
) -> None:
    crashed = make_backend(lease_seconds=2.0)
    old = crashed.lock(LockInfo(operation="apply"))
    with pytest.raises(LockHeld):
        make_backend(lease_seconds=2.0).lock(LockInfo(operation="apply"))
    outlive_lock(crashed)  # the holder stopped renewing
    taker = make_backend(lease_seconds=2.0)
    new = taker.lock(LockInfo(operation="apply"))
    assert new != old and taker.takeover is not None and taker.takeover.id == old
    with pytest.raises(LockNotFound, match=f"is now {new}"):
        crashed.renew(old)
    with pytest.raises(LockNotFound):
        crashed.unlock(old)
    taker.renew(new)
    current = taker.current_lock()
    assert current is not None and current.id == new
    taker.unlock(new)


def test_a_renewed_lock_is_not_taken_over(make_backend: MakeBackend) -> None:
    holder = make_backend(lease_seconds=2.0)
    lock_id = holder.lock(LockInfo(operation="apply"))
    first = holder.current_lock()
    assert first is not None and first.expires
    # renewed every 0.3 s until the first lease is over: held all along, and still held
    while datetime.now(UTC) <= datetime.fromisoformat(first.expires):
        time.sleep(0.3)
        holder.renew(lock_id)
    with pytest.raises(LockHeld):
        make_backend(lease_seconds=2.0).lock(LockInfo(operation="apply"))


def test_the_cli_lock_renews_while_the_block_runs(
    make_backend: MakeBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = make_backend(lease_seconds=3.0)
    with locked(backend, "apply", True, "0s"):
        lock = backend.current_lock()
        assert lock is not None
        outlive_lock(make_backend())  # past the lease it took: renewed by the thread every 1 s
        with pytest.raises(LockHeld) as info:
            make_backend(lease_seconds=3.0).lock(LockInfo(operation="apply"))
        assert info.value.holder.id == lock.id
    assert backend.current_lock() is None
    assert "WARNING" not in capsys.readouterr().err


def test_the_cli_lock_reports_a_lost_lock(
    make_backend: MakeBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = make_backend(lease_seconds=0.6)
    with locked(backend, "apply", True, "0s") as watch:
        lock = backend.current_lock()
        assert lock is not None
        make_backend().force_unlock(lock.id)
        wait_for(lambda: watch.lost, "the renewal to find the lock gone", timeout=120)
    err = capsys.readouterr().err
    assert f"the state lock {lock.id} was LOST" in err
    assert "no longer held" in err


def test_the_cli_lock_reports_a_takeover(
    make_backend: MakeBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    crashed = make_backend(lease_seconds=0.3)
    crashed.lock(LockInfo(operation="destroy"))
    outlive_lock(crashed)
    with locked(make_backend(lease_seconds=5), "apply", True, "0s"):
        pass
    err = capsys.readouterr().err
    assert "took over the expired lock of" in err and "destroy since" in err


def test_the_cli_lock_error_names_the_holder(make_backend: MakeBackend) -> None:
    lock_id = make_backend().lock(LockInfo(operation="apply"))
    with pytest.raises(DiagnosticError) as info, locked(make_backend(), "plan", True, "0s"):
        pass
    assert f"substratus force-unlock {lock_id}" in info.value.diagnostics[0].detail


def test_two_processes_taking_over_the_same_expired_lock(
    make_backend: MakeBackend, emulator: GcsServer, state_url: str, tmp_path: Path
) -> None:
    """Exactly one of the takers wins; the others see the winner's lock as held. The proxy holds
    every upload of the lock back for 2 s, so every taker (each ready, waiting for the go) sees
    the expired lock and tries to overwrite it: the race is certain, not left to timing."""
    for attempt in range(2):
        stale = make_backend(lease_seconds=0.2)
        stale_id = stale.lock(LockInfo(operation="apply"))
        go = tmp_path / f"go-{attempt}"
        procs = [worker(emulator, "takeover", state_url, str(go), lease="30s") for _ in range(3)]
        for proc in procs:  # each is up, waiting for the go
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline()) == {"ready": True}
        outlive_lock(stale)
        emulator.proxy.reset_stats()
        emulator.proxy.set_faults(
            rate=0.0, delay=2.0, delay_rate=1.0, only_methods=["POST"], object_regex=r"\.lock$"
        )
        go.touch()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        emulator.proxy.clear_faults()
        winners = [r for r in results if "won" in r]
        assert len(winners) == 1, results
        assert winners[0]["stale"] == stale_id
        assert all(r["held"] == winners[0]["won"] for r in results if "held" in r), results
        overwrites = [
            entry.status
            for entry in emulator.proxy.log()
            if entry.method == "POST" and f"ifGenerationMatch={stale_id}" in entry.query
        ]
        assert sorted(overwrites) == [200, 412, 412]
        make_backend().force_unlock(winners[0]["won"])


def test_writes_of_a_holder_that_lost_its_lock_fail_rather_than_overwrite(
    make_backend: MakeBackend,
) -> None:
    slow = make_backend(lease_seconds=0.3)
    slow.lock(LockInfo(operation="apply"))
    state = state_of("a")
    token = slow.write(state, None, [])
    outlive_lock(slow)
    taker = make_backend(lease_seconds=30)
    taker.lock(LockInfo(operation="apply"))
    theirs, their_token = taker.read()
    assert theirs is not None
    their_token = taker.write(theirs, their_token, add(theirs, "theirs"))
    from substratus.engine.backend import StateConflict

    with pytest.raises(StateConflict):
        slow.write(state, token, add(state, "late"))
    assert make_backend().read() == (theirs, their_token)


def test_a_holder_that_lost_its_lock_does_not_fold_on_release(
    make_backend: MakeBackend, emulator: GcsServer
) -> None:
    """Folding rewrites the base: only the holder of the lock may do it, or the new holder's
    next write would fail."""
    slow = make_backend(lease_seconds=0.3)
    old = slow.lock(LockInfo(operation="apply"))
    state = state_of("a")
    token = slow.write(state, None, [])
    slow.write(state, token, add(state, "b"))  # a journal entry to fold
    outlive_lock(slow)
    taker = make_backend(lease_seconds=30)
    new = taker.lock(LockInfo(operation="apply"))
    theirs, their_token = taker.read()
    assert theirs == state and their_token is not None
    with pytest.raises(LockNotFound):
        slow.unlock(old)
    taker.write(theirs, their_token, add(theirs, "c"))  # no conflict: nothing was folded
    taker.unlock(new)
    assert make_backend().read()[0] == theirs
