"""FileBackend state: round trip, atomic + durable writes, compare-and-swap, backup, errors."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.backend import Backend, StateConflict
from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.statefile import StateFile
from substratus.state.local import FileBackend

FORK = multiprocessing.get_context("fork")
StateFactory = Callable[..., StateFile]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def message(exc: DiagnosticError) -> str:
    return " ".join(f"{d.summary} {d.detail}" for d in exc.diagnostics)


# -- round trip --------------------------------------------------------------------------------


def test_conforms_to_backend_protocol(backend: FileBackend) -> None:
    typed: Backend = backend
    assert typed.workspace == "default"
    assert typed.url.startswith("file:///")


def test_read_without_state_returns_none(backend: FileBackend, state_dir: Path) -> None:
    assert backend.read() == (None, None)
    assert not state_dir.exists()  # reading creates nothing


def test_round_trip(backend: FileBackend, make_state: StateFactory) -> None:
    state = make_state("a", "b", serial=1)
    token = backend.write(state, None, ["model.a", "model.b"])
    assert backend.state_path.read_text() == state.to_json()
    assert token == sha(backend.state_path.read_bytes())
    loaded, read_token = backend.read()
    assert loaded == state
    assert read_token == token

    assert loaded is not None
    loaded.serial += 1
    del loaded.resources["model.a"]
    token2 = backend.write(loaded, token, ["model.a"])
    again, token3 = FileBackend(backend.url).read()
    assert again == loaded and token3 == token2 != token


# -- atomic writes -------------------------------------------------------------------------------


def _seed(backend: FileBackend, make_state: StateFactory) -> tuple[bytes, str]:
    token = backend.write(make_state("old", serial=1), None, [])
    return backend.state_path.read_bytes(), token


def test_failed_replace_leaves_old_state_and_no_temp_files(
    backend: FileBackend, make_state: StateFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, token = _seed(backend, make_state)

    def boom(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(DiagnosticError) as info:
        backend.write(make_state("new", serial=2), token, [])
    monkeypatch.undo()
    assert str(backend.state_path) in message(info.value)
    assert backend.state_path.read_bytes() == before
    assert backend.read()[1] == token
    assert temp_files(backend.directory) == []


def test_disk_full_mid_write_leaves_old_state(
    backend: FileBackend, make_state: StateFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, token = _seed(backend, make_state)
    real_write = os.write
    calls = {"n": 0}

    def half_then_enospc(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    backend.store._backed_up = True  # so the first os.write is the state's own temp file
    monkeypatch.setattr(os, "write", half_then_enospc)
    with pytest.raises(DiagnosticError) as info:
        backend.write(make_state("new" * 1000, serial=2), token, [])
    monkeypatch.undo()
    assert calls["n"] == 2
    assert "full" in message(info.value)
    assert backend.state_path.read_bytes() == before
    assert temp_files(backend.directory) == []


def test_interrupt_during_fsync_leaves_old_state(
    backend: FileBackend, make_state: StateFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, token = _seed(backend, make_state)

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        backend.write(make_state("new", serial=2), token, [])
    monkeypatch.undo()
    assert backend.state_path.read_bytes() == before
    assert temp_files(backend.directory) == []


def test_serialisation_failure_touches_nothing(
    backend: FileBackend, make_state: StateFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, token = _seed(backend, make_state)

    def broken(self: StateFile) -> str:
        raise RuntimeError("cannot serialise")

    monkeypatch.setattr(StateFile, "to_json", broken)
    with pytest.raises(RuntimeError):
        backend.write(make_state("new", serial=2), token, [])
    monkeypatch.undo()
    assert backend.state_path.read_bytes() == before
    assert sorted(os.listdir(backend.directory)) == ["default.json"]


def test_orphaned_temp_files_are_cleaned_up(backend: FileBackend, make_state: StateFactory) -> None:
    _, token = _seed(backend, make_state)
    orphan = backend.directory / ".default.json.0123456789abcdef.tmp"
    orphan.write_text("{half")
    backend.write(make_state("new", serial=2), token, [])
    assert temp_files(backend.directory) == []


# -- compare-and-swap ----------------------------------------------------------------------------


def test_stale_writer_gets_conflict(state_dir: Path, make_state: StateFactory) -> None:
    first, second = FileBackend(state_dir), FileBackend(state_dir)
    first.write(make_state("a", serial=1), None, [])
    mine, my_token = first.read()
    theirs, their_token = second.read()
    assert mine is not None and theirs is not None
    theirs.serial += 1
    second.write(theirs, their_token, [])
    after = second.state_path.read_bytes()

    mine.serial += 1
    with pytest.raises(StateConflict, match="changed by another process"):
        first.write(mine, my_token, [])
    assert first.state_path.read_bytes() == after  # nothing written


def test_conflict_when_created_or_deleted_meanwhile(
    backend: FileBackend, make_state: StateFactory
) -> None:
    FileBackend(backend.directory).write(make_state("x"), None, [])
    with pytest.raises(StateConflict, match="read no state"):
        backend.write(make_state("y"), None, [])  # expected "absent", but it exists now
    _, token = backend.read()
    backend.state_path.unlink()
    with pytest.raises(StateConflict, match="deleted"):
        backend.write(make_state("y"), token, [])


def test_conflict_when_another_process_edits_the_file(
    backend: FileBackend, make_state: StateFactory
) -> None:
    _, token = _seed(backend, make_state)
    edit = (
        "import sys, json, pathlib; p = pathlib.Path(sys.argv[1]); d = json.loads(p.read_text());"
        "d['serial'] = 41; p.write_text(json.dumps(d))"
    )
    subprocess.run([sys.executable, "-c", edit, str(backend.state_path)], check=True)
    with pytest.raises(StateConflict, match="serial 41"):
        backend.write(make_state("new", serial=2), token, [])


def _increment(directory: str, worker: int, count: int, conflicts: Any, journaled: bool) -> None:
    backend = FileBackend(directory)
    done = 0
    while done < count:
        state, token = backend.read()
        assert state is not None
        state.serial += 1
        address = f"model.w{worker}-{done}"
        state.resources[address] = state.resources["model.seed"]
        try:
            backend.write(state, token, [address] if journaled else [])
            done += 1
        except StateConflict:
            with conflicts.get_lock():
                conflicts.value += 1


@pytest.mark.parametrize("journaled", [True, False], ids=["journal", "compact"])
def test_no_lost_update_across_processes(
    state_dir: Path, make_state: StateFactory, journaled: bool
) -> None:
    """Unlocked read-modify-write loops in N processes: CAS makes every increment count, whether
    the writes append to the journal or rewrite the state."""
    FileBackend(state_dir).write(make_state("seed"), None, [])
    workers, count = 6, 12
    conflicts = FORK.Value("i", 0)
    procs = [
        FORK.Process(target=_increment, args=(str(state_dir), w, count, conflicts, journaled))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    state, _ = FileBackend(state_dir).read()
    assert state is not None
    assert state.serial == workers * count
    assert len(state.resources) == workers * count + 1
    assert temp_files(state_dir) == []


# -- backup --------------------------------------------------------------------------------------


def test_backup_written_once_per_backend_object(state_dir: Path, make_state: StateFactory) -> None:
    FileBackend(state_dir).write(make_state("v1", serial=1), None, [])
    v1 = (state_dir / "default.json").read_bytes()

    run = FileBackend(state_dir)
    _, token = run.read()
    token = run.write(make_state("v2", serial=2), token, [])
    assert run.backup_path.read_bytes() == v1
    token = run.write(make_state("v3", serial=3), token, [])
    assert run.backup_path.read_bytes() == v1  # not refreshed by later writes
    v3 = run.state_path.read_bytes()

    next_run = FileBackend(state_dir)
    next_run.write(make_state("v4", serial=4), token, [])
    assert next_run.backup_path.read_bytes() == v3


def test_backup_on_first_overwrite_after_creating(
    backend: FileBackend, make_state: StateFactory
) -> None:
    token = backend.write(make_state("v1", serial=1), None, [])
    assert not backend.backup_path.exists()  # creating the file overwrites nothing
    v1 = backend.state_path.read_bytes()
    backend.write(make_state("v2", serial=2), token, [])
    assert backend.backup_path.read_bytes() == v1
    assert "default.json.backup" not in backend.workspaces()


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"\xff\xfe\x00garbage", b"[1, 2]", b'{"version": 1, "serial": "x"}'],
)
def test_corrupt_state_is_a_diagnostic(backend: FileBackend, content: bytes) -> None:
    backend.directory.mkdir(parents=True)
    backend.state_path.write_bytes(content)
    with pytest.raises(DiagnosticError) as info:
        backend.read()
    text = message(info.value)
    assert str(backend.state_path) in text
    assert "default.json.backup" in text and "state push" in text


def test_newer_format_version_says_upgrade(backend: FileBackend) -> None:
    backend.directory.mkdir(parents=True)
    backend.state_path.write_text('{"version": 99, "resources": {}}')
    with pytest.raises(DiagnosticError) as info:
        backend.read()
    assert "upgrade substratus" in message(info.value)
    assert "backup" not in message(info.value)


def test_unreadable_state_is_a_diagnostic(
    backend: FileBackend, make_state: StateFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(backend, make_state)
    real_open = os.open

    def denied(path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(path) == backend.state_path:  # as a file without read permission
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(DiagnosticError) as info:
        backend.read()
    text = message(info.value)
    assert str(backend.state_path) in text and "permission" in text.lower()


def test_state_directory_that_is_a_file_is_a_diagnostic(
    tmp_path: Path, make_state: StateFactory
) -> None:
    # A real OS error that root cannot bypass: the state "directory" is a regular file.
    blocker = tmp_path / "state"
    blocker.write_text("not a directory", encoding="utf-8")
    with pytest.raises(DiagnosticError) as info:
        FileBackend(blocker).write(make_state(), None, [])
    assert str(blocker) in message(info.value)
    assert blocker.read_text(encoding="utf-8") == "not a directory"


def test_permission_denied_creating_directory(
    tmp_path: Path, make_state: StateFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: Path, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    with pytest.raises(DiagnosticError) as info:
        FileBackend(tmp_path / "ro" / "state").write(make_state(), None, [])
    text = message(info.value)
    assert str(tmp_path / "ro" / "state") in text and "writable directory" in text


def test_state_directory_blocked_by_a_file(tmp_path: Path, make_state: StateFactory) -> None:
    (tmp_path / "blocker").write_text("")
    backend = FileBackend(tmp_path / "blocker" / "state")
    with pytest.raises(DiagnosticError, match="could not create the state directory"):
        backend.write(make_state(), None, [])


# -- workspaces ----------------------------------------------------------------------------------


def test_workspaces(state_dir: Path, make_state: StateFactory) -> None:
    assert FileBackend(state_dir).workspaces() == ["default"]
    for ws in ("staging", "team-b", "v1.2"):
        FileBackend(state_dir, ws).write(make_state(), None, [])
    for junk in (".hidden.json", "notes.txt", "x.json.backup", "staging.lock", "-bad.json"):
        (state_dir / junk).write_text("{}")
    (state_dir / "dir.json").mkdir()
    expected = ["default", "staging", "team-b", "v1.2"]
    assert FileBackend(state_dir, "staging").workspaces() == expected


def test_workspaces_are_separate(state_dir: Path, make_state: StateFactory) -> None:
    FileBackend(state_dir, "staging").write(make_state("s"), None, [])
    assert FileBackend(state_dir).read() == (None, None)
    staged, _ = FileBackend(state_dir, "staging").read()
    assert staged is not None and list(staged.resources) == ["model.s"]
