"""The state journal in one process: the line format, replay, when it compacts, and the bytes
an apply writes."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.statefile import PendingOperation, StateFile
from substratus.state import store
from substratus.state.journal import encode_line
from substratus.state.local import FileBackend
from tests.state.journal_workload import lines, record, seed, seeded, sha, step

# -- format and replay --------------------------------------------------------------------------


def test_a_write_appends_one_line_in_the_documented_format(backend: FileBackend) -> None:
    state, token = seeded(backend, "a", "b")
    base = backend.state_path.read_bytes()
    state.resources["model.c"] = record("c")
    del state.resources["model.a"]
    token = step(backend, state, token, ["model.c", "model.a"])

    assert backend.state_path.read_bytes() == base  # the base is not rewritten
    (line,) = lines(backend)
    assert line == {
        "base": sha(backend.state_path),
        "lineage": state.lineage,
        "serial": 2,
        "version": 1,
        "substratus_version": state.substratus_version,
        "set": {"model.c": state.resources["model.c"].model_dump(mode="json", exclude_none=True)},
        "remove": ["model.a"],
    }
    assert backend.journal_path.read_bytes().endswith(b"}\n")
    assert token.startswith(sha(backend.state_path) + ":1:")
    assert FileBackend(backend.directory).read() == (state, token)


def test_round_trip_through_journal_and_compactions(backend: FileBackend) -> None:
    """Random sets and removes, some big records: after every write a fresh reader agrees."""
    rng = random.Random(7)
    state, token = seeded(backend)
    compactions = appends = 0
    for _ in range(400):
        changed = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            address = f"model.m{rng.randrange(30)}"
            if address in state.resources and rng.random() < 0.3:
                del state.resources[address]
            else:
                state.resources[address] = record(address[6:], rng.randrange(4000))
            changed.append(address)
        before = backend.state_path.stat().st_ino
        token = step(backend, state, token, changed)
        compacted = backend.state_path.stat().st_ino != before
        compactions += compacted
        appends += not compacted
        assert compacted != backend.journal_path.exists()
        loaded, read_token = FileBackend(backend.directory).read()
        assert loaded == state and read_token == token
        assert loaded is not None and list(loaded.resources) == sorted(loaded.resources)
    assert compactions >= 5 and appends >= 300


def test_pending_then_completed_records_replay_exactly(backend: FileBackend) -> None:
    state, token = seeded(backend)
    pending = PendingOperation(
        action="create", digest="sha256:x", spec={"a": [1, 2.5, None]}, started_at="now"
    )
    state.resources["model.p"] = record("p", status="pending", pending=pending)
    token = step(backend, state, token, ["model.p"])
    assert FileBackend(backend.directory).read()[0] == state
    state.resources["model.p"] = record("p", outputs={"url": "file:///x", "ok": True})
    token = step(backend, state, token, ["model.p"])
    loaded, _ = FileBackend(backend.directory).read()
    assert loaded == state and loaded is not None and loaded.resources["model.p"].pending is None
    assert len(lines(backend)) == 2


# -- when it compacts -----------------------------------------------------------------------------


@pytest.mark.parametrize("base_records", [0, 60], ids=["small-base", "large-base"])
def test_journal_grows_to_the_threshold_then_compacts(
    backend: FileBackend, base_records: int
) -> None:
    state, token = seeded(backend)
    for i in range(base_records):
        state.resources[f"model.base{i}"] = record(f"base{i}", 2000)
    token = step(backend, state, token, [])  # compacts: the base holds them all
    threshold = max(store.MIN_JOURNAL_BYTES, backend.state_path.stat().st_size)
    assert threshold == (65536 if not base_records else backend.state_path.stat().st_size)
    for i in range(1000):
        address = f"model.j{i}"
        state.resources[address] = record(f"j{i}", 1500)
        base_sha = sha(backend.state_path)
        size = backend.journal_path.stat().st_size if backend.journal_path.exists() else 0
        state.serial += 1
        grown = size + len(encode_line(base_sha, state, [address]))
        token = backend.write(state, token, [address])
        if grown >= threshold:
            assert not backend.journal_path.exists()
            assert StateFile.from_json(backend.state_path.read_bytes()) == state
            break
        assert backend.journal_path.stat().st_size == grown < threshold
    else:
        pytest.fail("never compacted")
    assert i >= 20


def _compacts(backend: FileBackend, state: StateFile, token: str, changed: list[str]) -> str:
    token = backend.write(state, token, changed)
    assert not backend.journal_path.exists()
    assert backend.state_path.read_text() == state.to_json()
    assert FileBackend(backend.directory).read() == (state, token)
    return token


def test_writes_that_a_line_cannot_express_compact(backend: FileBackend) -> None:
    state, token = seeded(backend, "a", "b", "c")
    token = step(backend, state, token, ["model.a"])  # an append, so there is a journal
    assert len(lines(backend)) == 1

    state.serial += 1  # changed == []
    token = _compacts(backend, state, token, [])
    token = step(backend, state, token, ["model.a"])

    state.serial += 1  # an address in neither the old nor the new state
    token = _compacts(backend, state, token, ["model.nowhere"])
    token = step(backend, state, token, ["model.a"])

    del state.resources["model.b"]  # a removal that `changed` does not list
    state.resources["model.d"] = record("d")
    state.serial += 1
    token = _compacts(backend, state, token, ["model.d"])
    token = step(backend, state, token, ["model.a"])

    state.serial += 5  # a serial that is not the stored one + 1
    token = _compacts(backend, state, token, ["model.a"])
    token = step(backend, state, token, ["model.a"])

    state.lineage = "another-lineage"  # e.g. `state push --force` of an unrelated state
    state.serial += 1
    token = _compacts(backend, state, token, ["model.a"])


def test_journal_disabled_rewrites_every_time(state_dir: Path) -> None:
    old = FileBackend(state_dir, journal=False)
    state, token = seeded(old, "a")
    for i in range(5):
        state.resources[f"model.n{i}"] = record(f"n{i}")
        token = step(old, state, token, [f"model.n{i}"])
        assert not old.journal_path.exists()
        assert old.state_path.read_text() == state.to_json()
    journaled = FileBackend(state_dir)
    _, read_token = journaled.read()
    assert read_token == token
    token = step(journaled, state, token, ["model.a"])
    assert len(lines(journaled)) == 1
    assert old.read() == (state, token)  # reading always replays the journal
    state.serial += 1
    _compacts(old, state, token, ["model.a"])


# -- bytes written ------------------------------------------------------------------------------


def test_apply_like_writes_are_linear_in_bytes(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """N = 1,000 resources, two writes each (pending intent, then the record), as the Walker."""
    written = {"bytes": 0, "compactions": 0}
    real_write, real_replace = os.write, os.replace

    def counting_write(fd: int, data: Any) -> int:
        n = real_write(fd, data)
        written["bytes"] += n
        return n

    def counting_replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        written["compactions"] += os.fspath(dst) == str(backend.state_path)

    monkeypatch.setattr(os, "write", counting_write)
    monkeypatch.setattr(os, "replace", counting_replace)
    state, token = seed(), None
    for i in range(1000):
        name = f"m{i:04d}"
        pending = PendingOperation(
            action="create",
            digest=f"sha256:{i}",
            spec={"image": "trainer:1", "args": ["--epochs", "3"] * 20},
            started_at="2024-01-01T00:00:00Z",
            intent={"run_dir": f"/runs/{name}"},
        )
        state.resources[f"model.{name}"] = record(name, 300, status="pending", pending=pending)
        state.serial += 1
        token = backend.write(state, token, [f"model.{name}"])
        state.resources[f"model.{name}"] = record(name, 300, outputs={"url": f"file:///{name}"})
        state.serial += 1
        token = backend.write(state, token, [f"model.{name}"])
    monkeypatch.undo()

    final = len(state.to_json().encode())
    assert FileBackend(backend.directory).read() == (state, token)
    assert final > 500_000
    assert written["bytes"] < 8 * final, (written, final)
    assert written["compactions"] <= 20  # geometric: each one waits for the journal to double
    # the old full rewrite would have written ~1,000x the final state (sum of 2,000 sizes)
