"""A damaged local state is refused, never read as a smaller one, and ``recover`` rebuilds it:
the base edited, damaged or replaced under a journal that holds writes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.statefile import StateFile
from substratus.state.local import FileBackend
from tests.state.journal_workload import message, record, seeded, sha, step


def journaled(backend: FileBackend) -> StateFile:
    """A base at serial 1 (``model.a``) and a journal of serials 2–3 (``model.b``, ``model.c``);
    the backup is the base (the state before this backend's second write)."""
    state, token = seeded(backend, "a")
    for name in ("b", "c"):
        state.resources[f"model.{name}"] = record(name)
        token = step(backend, state, token, [f"model.{name}"])
    assert backend.backup_path.read_bytes() == backend.state_path.read_bytes()
    return state


def _edit(path: Path) -> None:
    doc = json.loads(path.read_text())
    doc["resources"]["model.a"]["digest"] = "sha256:edited"
    path.write_text(json.dumps(doc, indent=2) + "\n")


def _append(data: bytes) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        with path.open("ab") as fh:
            fh.write(data)

    return damage


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "byte-appended": (_append(b"x"), "is corrupt, and its journal"),
    "space-appended": (_append(b" "), "does not belong to the state"),
    "field-edited": (_edit, "does not belong to the state"),
}


def _files(backend: FileBackend) -> tuple[bytes, bytes]:
    return backend.state_path.read_bytes(), backend.journal_path.read_bytes()


def _refused(backend: FileBackend, *phrases: str) -> None:
    """Reading and writing both raise one diagnostic with the phrases; nothing changes."""
    before = _files(backend)
    state = StateFile(lineage="x", serial=99)
    for action in (
        lambda: FileBackend(backend.directory).read(),
        lambda: FileBackend(backend.directory).write(state, None, ["model.a"]),
    ):
        with pytest.raises(DiagnosticError) as info:
            action()
        text = message(info.value)
        assert str(backend.state_path) in text and str(backend.journal_path) in text
        assert f"substratus state recover --state {backend.directory.as_uri()}" in text
        for phrase in phrases:
            assert phrase in text, (phrase, text)
        assert _files(backend) == before


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_base_is_refused_then_rebuilt_from_the_backup(
    backend: FileBackend, damage: str
) -> None:
    state = journaled(backend)
    written_on = sha(backend.state_path)
    damage_it, what = DAMAGES[damage]
    damage_it(backend.state_path)
    damaged = _files(backend)
    _refused(backend, what, "2 writes after serial 1 (serials 2–3)", "nothing was changed")

    report = FileBackend(backend.directory).recover(None)
    assert f"from the backup {backend.backup_path} (serial 1)" in report
    assert "2 write(s) of its journal (serials 2–3)" in report
    state.serial += 1  # the rebuilt state is a new write
    assert FileBackend(backend.directory).read()[0] == state
    assert not backend.journal_path.exists()
    kept = backend.directory / "default.json.damaged", backend.directory / "default.journal.damaged"
    assert (kept[0].read_bytes(), kept[1].read_bytes()) == damaged
    assert sha(backend.backup_path) == written_on  # the backup is untouched


def test_an_older_copy_of_the_state_restored_under_the_journal(backend: FileBackend) -> None:
    state, token = seeded(backend, "a")
    older = backend.state_path.read_bytes()
    state.resources["model.b"] = record("b")
    token = step(backend, state, token, [])  # a compaction: serial 2 is the new base
    newer = backend.state_path.read_bytes()
    for name in ("c", "d"):
        state.resources[f"model.{name}"] = record(name)
        token = step(backend, state, token, [f"model.{name}"])
    backend.state_path.write_bytes(older)
    _refused(backend, "2 writes after serial 2 (serials 3–4)", "(serial 1)")

    with pytest.raises(DiagnosticError) as info:  # neither the backup nor the base will do
        FileBackend(backend.directory).recover(None)
    text = message(info.value)
    assert "serials 2–2 are in neither" in text and "--from FILE" in text
    assert _files(backend)[0] == older

    copy = backend.directory.parent / "pulled.json"
    copy.write_bytes(newer)
    report = FileBackend(backend.directory).recover((str(copy), newer))
    assert f"from the file {copy} (serial 2)" in report
    state.serial += 1
    assert FileBackend(backend.directory).read()[0] == state


def test_a_copy_from_another_history_is_never_taken_for_the_journal(backend: FileBackend) -> None:
    state = journaled(backend)
    fork = state.model_copy(deep=True)  # same lineage, a higher serial, another history
    del fork.resources["model.c"]
    fork.serial = 7
    backend.state_path.write_text(fork.to_json())
    _refused(backend, "2 writes after serial 1 (serials 2–3)", "(serial 7)")

    with pytest.raises(DiagnosticError) as info:  # the newer copy might hold them: ask
        FileBackend(backend.directory).recover(None)
    assert "newer than every write of the journal" in message(info.value)
    named = (str(backend.backup_path), backend.backup_path.read_bytes())
    report = FileBackend(backend.directory).recover(named)  # the user says which copy
    assert "2 write(s) of its journal (serials 2–3)" in report
    state.serial += 1
    assert FileBackend(backend.directory).read()[0] == state


def test_a_named_copy_must_hold_the_journal_it_continues(backend: FileBackend) -> None:
    state = journaled(backend)
    _edit(backend.state_path)
    other = state.model_copy(deep=True)
    other.serial = 2
    other.resources["model.b"] = record("b", size=3)  # serial 2 as another history wrote it
    with pytest.raises(DiagnosticError) as info:
        FileBackend(backend.directory).recover(("other.json", other.to_json().encode()))
    assert "does not hold the journal's record of model.b" in message(info.value)


def test_recover_writes_nothing_when_the_state_reads(backend: FileBackend) -> None:
    journaled(backend)
    before = _files(backend)
    assert "nothing to recover" in FileBackend(backend.directory).recover(None)
    assert _files(backend) == before
    assert not (backend.directory / "default.json.damaged").exists()


@pytest.mark.parametrize("crash", ["before-the-rename", "before-removing-the-journal"])
def test_a_crash_during_recover_leaves_the_damaged_or_the_rebuilt_state(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    state = journaled(backend)
    _edit(backend.state_path)
    real_replace, real_unlink = os.replace, os.unlink

    def dying_replace(src: Any, dst: Any) -> None:
        if os.fspath(dst) == os.fspath(backend.state_path):
            raise KeyboardInterrupt
        real_replace(src, dst)

    def kept_unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if os.fspath(path) != os.fspath(backend.journal_path):
            real_unlink(path, *args, **kwargs)

    if crash == "before-the-rename":
        monkeypatch.setattr(os, "replace", dying_replace)
        with pytest.raises(KeyboardInterrupt):
            FileBackend(backend.directory).recover(None)
        monkeypatch.undo()
        with pytest.raises(DiagnosticError, match="does not belong"):
            FileBackend(backend.directory).read()
        FileBackend(backend.directory).recover(None)  # and it can be run again
    else:
        monkeypatch.setattr(os, "unlink", kept_unlink)
        FileBackend(backend.directory).recover(None)
        monkeypatch.undo()
        assert backend.journal_path.exists()  # its writes are sealed: provably in the new base
    state.serial += 1
    assert FileBackend(backend.directory).read()[0] == state


def test_foreign_writes_seen_while_the_base_kept_being_replaced_are_not_called_damage(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    journaled(backend)
    _edit(backend.state_path)
    monkeypatch.setattr("substratus.state.snapshot._replaced", lambda path, info: True)
    with pytest.raises(DiagnosticError, match="kept changing while it was being read"):
        FileBackend(backend.directory).read()


def test_a_compaction_stopped_before_its_rename_is_redone_by_the_next_write(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = journaled(backend)
    token = FileBackend(backend.directory).read()[1]
    real_replace = os.replace

    def dying_replace(src: Any, dst: Any) -> None:
        if os.fspath(dst) == os.fspath(backend.state_path):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        backend.write(state.model_copy(update={"serial": 4}), token, [])
    monkeypatch.undo()
    sealed = json.loads(backend.journal_path.read_bytes().splitlines()[-1])
    assert sealed["base"] == sha(backend.state_path) and isinstance(sealed["sealed"], str)
    assert FileBackend(backend.directory).read() == (state, token)  # the state before

    writer = FileBackend(backend.directory)
    current, token = writer.read()
    assert current is not None and token is not None
    current.resources["model.d"] = record("d")
    token = step(writer, current, token, ["model.d"])  # a compaction, not an append
    assert not backend.journal_path.exists()
    assert FileBackend(backend.directory).read() == (current, token)
