"""The state journal when things go wrong: torn, corrupt and stale journals, compare-and-swap,
tokens, and the backup."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.backend import StateConflict
from substratus.engine.diagnostic import DiagnosticError
from substratus.state.local import FileBackend
from tests.state.journal_workload import (
    Expected,
    advance,
    lines,
    message,
    record,
    seed,
    seeded,
    sha,
    step,
)

# -- torn, corrupt and stale journals --------------------------------------------------------------


@pytest.mark.parametrize("tail", [b'{"base": "ab', b"\x00" * 40, b"garbage\n", b"{}}\n"])
def test_torn_last_line_is_ignored_then_cut_off(backend: FileBackend, tail: bytes) -> None:
    state, token = seeded(backend, "a")
    state.resources["model.b"] = record("b")
    token = step(backend, state, token, ["model.b"])
    good = backend.journal_path.read_bytes()
    with backend.journal_path.open("ab") as fh:
        fh.write(tail)
    assert FileBackend(backend.directory).read() == (state, token)

    state.resources["model.c"] = record("c")
    token = step(backend, state, token, ["model.c"])  # with the token from before the tail
    data = backend.journal_path.read_bytes()
    assert data.startswith(good) and tail not in data and len(lines(backend)) == 2
    assert FileBackend(backend.directory).read() == (state, token)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda ls: [ls[0], b"{not json\n", *ls[1:]], "not valid JSON"),
        (lambda ls: [ls[0], b"[1, 2]\n", *ls[1:]], "not a journal entry"),
        (lambda ls: [ls[0], *ls[2:]], "serial 4 does not follow serial 2"),
        (lambda ls: [ls[0], ls[1].replace(b'"serial":3', b'"serial":33'), *ls[2:]], "serial 33"),
        (lambda ls: [ls[0], ls[1].replace(b"cafe", b"beef"), *ls[2:]], "lineage"),
        (lambda ls: [ls[0], ls[1].replace(b'"remove":[]', b'"remove":{}'), *ls[2:]], "remove"),
    ],
    ids=["not-json", "not-entry", "gap", "serial", "lineage", "remove"],
)
def test_corruption_before_the_last_line_is_a_diagnostic(
    backend: FileBackend, edit: Any, reason: str
) -> None:
    state, token = seeded(backend, "a")
    for name in ("b", "c", "d"):
        state.resources[f"model.{name}"] = record(name)
        token = step(backend, state, token, [f"model.{name}"])
    original = backend.journal_path.read_bytes()
    backend.journal_path.write_bytes(b"".join(edit(original.splitlines(keepends=True))))
    before = (backend.state_path.read_bytes(), backend.journal_path.read_bytes())

    for action in (
        lambda: FileBackend(backend.directory).read(),
        lambda: FileBackend(backend.directory).write(state, token, ["model.a"]),
    ):
        with pytest.raises(DiagnosticError) as info:
            action()
        text = message(info.value)
        assert str(backend.journal_path) in text and "is corrupt" in text and reason in text
        assert "default.json.backup" in text and "state push" in text
        assert (backend.state_path.read_bytes(), backend.journal_path.read_bytes()) == before

    os.rename(backend.journal_path, f"{backend.journal_path}.corrupt")  # the fix it suggests
    loaded, _ = FileBackend(backend.directory).read()
    assert loaded is not None and loaded.serial == 1 and list(loaded.resources) == ["model.a"]


def test_malformed_record_in_a_line_is_a_diagnostic(backend: FileBackend) -> None:
    state, token = seeded(backend, "a")
    state.resources["model.b"] = record("b")
    step(backend, state, token, ["model.b"])
    data = backend.journal_path.read_bytes().replace(b'"kind":"Model"', b'"kind":7')
    backend.journal_path.write_bytes(data)
    with pytest.raises(DiagnosticError) as info:
        FileBackend(backend.directory).read()
    assert str(backend.journal_path) in message(info.value)


def test_stale_journal_left_by_a_compaction_is_ignored(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, token = seeded(backend, "a")
    for name in ("b", "c"):
        state.resources[f"model.{name}"] = record(name)
        token = step(backend, state, token, [f"model.{name}"])
    old_base = sha(backend.state_path)
    real_unlink = os.unlink

    def crash_before_removing_the_journal(path: Any, *args: Any, **kwargs: Any) -> None:
        if os.fspath(path) != os.fspath(backend.journal_path):
            real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", crash_before_removing_the_journal)
    del state.resources["model.b"]
    state.serial += 1
    token = backend.write(state, token, [])  # a compaction that "crashed" after the rename
    monkeypatch.undo()
    assert lines(backend)[-1] == {"base": old_base, "sealed": sha(backend.state_path)}

    assert FileBackend(backend.directory).read() == (state, token)
    state.resources["model.d"] = record("d")
    token = step(backend, state, token, ["model.d"])  # a fresh journal replaces the stale one
    assert [line["serial"] for line in lines(backend)] == [state.serial]
    assert FileBackend(backend.directory).read() == (state, token)


def test_a_journal_without_its_base_is_refused(backend: FileBackend) -> None:
    state, token = seeded(backend, "a")
    step(backend, state, token, ["model.a"])
    backend.state_path.unlink()
    journal = backend.journal_path.read_bytes()
    with pytest.raises(DiagnosticError) as info:
        FileBackend(backend.directory).read()
    text = message(info.value)
    assert f"the state {backend.state_path} is missing" in text
    assert f"{backend.journal_path} holds 1 write after serial 1 (serial 2)" in text
    assert "substratus state recover" in text
    with pytest.raises(DiagnosticError):
        FileBackend(backend.directory).write(seed(), None, ["model.x"])
    assert backend.journal_path.read_bytes() == journal and not backend.state_path.exists()


def test_a_workspace_delete_that_crashed_leaves_a_journal_that_is_ignored(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, token = seeded(backend, "a")
    token = step(backend, state, token, ["model.a"])
    real_unlink = os.unlink

    def crash_after_removing_the_base(path: Any, *args: Any, **kwargs: Any) -> None:
        real_unlink(path, *args, **kwargs)
        if os.fspath(path) == os.fspath(backend.state_path):
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "unlink", crash_after_removing_the_base)
    with pytest.raises(KeyboardInterrupt):
        backend.delete_workspace(token)
    monkeypatch.undo()
    assert lines(backend)[-1] == {"base": token.split(":")[0], "sealed": None}
    assert FileBackend(backend.directory).read() == (None, None)
    fresh = seed()
    token = FileBackend(backend.directory).write(fresh, None, ["model.x"])
    assert not backend.journal_path.exists()
    assert FileBackend(backend.directory).read() == (fresh, token)


def test_a_workspace_delete_is_compare_and_swap(backend: FileBackend) -> None:
    state, token = seeded(backend, "a")
    newer = step(FileBackend(backend.directory), state, token, ["model.a"])
    with pytest.raises(StateConflict):
        backend.delete_workspace(token)
    assert FileBackend(backend.directory).read() == (state, newer)
    backend.delete_workspace(newer)
    assert sorted(p.name for p in backend.directory.iterdir()) == []


# -- compare-and-swap and tokens ------------------------------------------------------------------


def test_every_write_changes_the_token(backend: FileBackend) -> None:
    state, token = seeded(backend)
    seen = {token}
    for _ in range(200):
        token = backend.write(state, token, advance(state))
        assert token not in seen
        seen.add(token)


def test_stale_writer_gets_conflict_with_a_journal(state_dir: Path) -> None:
    first, second = FileBackend(state_dir), FileBackend(state_dir)
    seeded(first, "a")
    mine, my_token = first.read()
    theirs, their_token = second.read()
    assert mine is not None and theirs is not None and my_token is not None
    theirs.resources["model.t"] = record("t")
    their_token = step(second, theirs, their_token or "", ["model.t"])
    files = (first.state_path.read_bytes(), first.journal_path.read_bytes())

    mine.resources["model.m"] = record("m")
    with pytest.raises(StateConflict, match="changed by another process"):
        step(first, mine, my_token, ["model.m"])
    with pytest.raises(StateConflict):
        first.write(mine, my_token, [])  # nor by compacting
    assert (first.state_path.read_bytes(), first.journal_path.read_bytes()) == files

    again, token = first.read()  # the loser reads again and wins
    assert again == theirs and token == their_token
    again.resources["model.m"] = record("m")
    token = step(first, again, token, ["model.m"])
    assert second.read() == (again, token)
    with pytest.raises(StateConflict):
        step(second, theirs, their_token, ["model.t"])


@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "by-rename"])
def test_conflict_when_the_journal_is_edited_meanwhile(
    backend: FileBackend, in_place: bool
) -> None:
    state, token = seeded(backend, "a")
    token = step(backend, state, token, ["model.a"])
    token = step(backend, state, token, ["model.a"])
    data = backend.journal_path.read_bytes().replace(b'"digest":""', b'"digest":"x"')
    edited = backend.directory / "edited"
    edited.write_bytes(data)
    if in_place:  # the last line changes: noticed without reading the whole journal
        backend.journal_path.write_bytes(data)
    else:
        os.replace(edited, backend.journal_path)
    with pytest.raises(StateConflict):
        step(backend, state, token, ["model.a"])


# -- backup ---------------------------------------------------------------------------------------


def test_backup_is_the_whole_state_before_the_run(state_dir: Path) -> None:
    run = FileBackend(state_dir)
    state, token = seeded(run, "a")
    seed_state = state.to_json()
    for name in ("b", "c"):
        state.resources[f"model.{name}"] = record(name)
        token = step(run, state, token, [f"model.{name}"])
    assert run.backup_path.read_text() == seed_state  # the state before this object's writes
    before_run = state.to_json()

    next_run = FileBackend(state_dir)
    loaded, read_token = next_run.read()
    assert loaded is not None and read_token == token
    loaded.resources["model.d"] = record("d")
    token = step(next_run, loaded, token, ["model.d"])
    assert next_run.backup_path.read_text() == before_run
    loaded.resources["model.e"] = record("e")
    step(next_run, loaded, token, ["model.e"])
    assert next_run.backup_path.read_text() == before_run  # once per backend object

    # the restore the diagnostics suggest: copy the backup over the base, remove the journal
    os.replace(next_run.backup_path, next_run.state_path)
    next_run.journal_path.unlink()
    assert FileBackend(state_dir).read()[0] == state


def test_expected_workload_matches_the_backend(backend: FileBackend) -> None:
    state, token = seed(), None
    for _ in range(120):
        token = backend.write(state, token, advance(state))
    assert FileBackend(backend.directory).read() == (Expected().at(120), token)


# -- failed appends ------------------------------------------------------------------------------


def _journaled(backend: FileBackend) -> tuple[Any, str, bytes]:
    state, token = seeded(backend, "a")
    state.resources["model.b"] = record("b")
    token = step(backend, state, token, ["model.b"])
    return state, token, backend.journal_path.read_bytes()


def test_interrupted_append_leaves_the_journal_as_it_was(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, token, journal = _journaled(backend)
    before = state.model_copy(deep=True)

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    state.resources["model.c"] = record("c")
    with pytest.raises(KeyboardInterrupt):
        step(backend, state, token, ["model.c"])
    monkeypatch.undo()
    assert backend.journal_path.read_bytes() == journal
    assert FileBackend(backend.directory).read() == (before, token)
    token = backend.write(state, token, ["model.c"])  # the same backend carries on
    assert FileBackend(backend.directory).read() == (state, token)


def test_disk_full_mid_append_is_a_diagnostic_and_cut_back(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, token, journal = _journaled(backend)
    real_write = os.write

    def half_then_enospc(fd: int, data: Any) -> int:
        if len(data) > 10:
            real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_enospc)
    state.resources["model.c"] = record("c")
    with pytest.raises(DiagnosticError) as info:
        step(backend, state, token, ["model.c"])
    monkeypatch.undo()
    assert "full" in message(info.value)
    assert backend.journal_path.read_bytes() == journal
    assert FileBackend(backend.directory).read()[1] == token
