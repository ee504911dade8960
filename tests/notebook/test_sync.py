"""Notebook sync-back end to end: the real watcher script polls a temp "remote" directory in a
subprocess, and its stdout lines drive a ``SyncBack`` on a temp "local" directory."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from substratus.notebook.sync import SyncBack, SyncEvent, remote_copy_name
from substratus.notebook.watcher import (
    WATCHER_SCRIPT,
    decode_read_output,
    excluded,
    read_command,
    watcher_command,
)

INTERVAL = 0.05
EXCLUDED = [
    "data/train.jsonl", "model/weights.bin", "artifacts/out/log.txt", "params.json",
    ".ipynb_checkpoints/nb-checkpoint.ipynb", ".~train.py", "__pycache__/m.cpython-311.pyc",
    "src/__pycache__/x.pyc", "lib.pyc", ".train.py.swp", "notes.txt~", "dl.tmp", ".git/config",
    "src/.hidden/a.py", "x.tmp/inner.py", ".substratus/notebook-sync.json",
]  # fmt: skip
INCLUDED = ["train.py", "src/data/x.py", "src/model.py", "params.json.bak", "a.remote.py", "m~x"]


def _load_script_rules() -> Callable[[str], bool]:
    namespace: dict[str, Any] = {"__name__": "nbwatch"}  # not __main__: defines, does not run
    exec(WATCHER_SCRIPT, namespace)
    check: Callable[[str], bool] = namespace["excluded"]
    return check


script_excluded = _load_script_rules()


def _pump(proc: subprocess.Popen[str], q: queue.Queue[str | None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        q.put(line)
    q.put(None)


class Loop:
    """A watcher subprocess on ``remote`` whose lines a ``SyncBack`` on ``local`` handles."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.remote, self.local = tmp, tmp / "remote", tmp / "local"
        self.remote.mkdir()
        self.local.mkdir()
        self.read_remote: Callable[[str], bytes] = lambda rel: (self.remote / rel).read_bytes()
        self.lines: list[dict[str, Any]] = []
        self.events: list[SyncEvent] = []
        self.procs: list[subprocess.Popen[str]] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._barriers = 0

    def start(self) -> dict[str, Any]:
        self.sync = SyncBack(self.local, lambda rel: self.read_remote(rel), self.events.append)
        cmd = watcher_command(
            str(self.remote),
            INTERVAL,
            state=str(self.tmp / "w.json"),
            exit_on_eof=True,
            python=sys.executable,
        )
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        threading.Thread(target=_pump, args=(proc, self._queue), daemon=True).start()
        start = len(self.lines)
        self.step(lambda: any(e["op"] == "hello" for e in self.lines[start:]))
        hello = next(e for e in self.lines[start:] if e["op"] == "hello")
        if not hello["resumed"]:  # then the baseline follows: one line per file
            self.step(
                lambda: sum(e["op"] == "exists" for e in self.lines[start:]) == hello["files"]
            )
        return hello

    def stop(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()  # --exit-on-eof
            proc.wait(timeout=60)
        self._queue = queue.Queue()

    def step(self, until: Callable[[], bool], timeout: float = 120.0) -> None:
        """Feed watcher lines to the SyncBack until ``until()`` holds (bounded)."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out: watcher {self.lines[-10:]}, sync {self.events[-10:]}")
            try:
                line = self._queue.get(timeout=INTERVAL)
            except queue.Empty:
                continue
            assert line is not None, f"the watcher exited: {self.lines[-10:]}"
            self.lines.append(json.loads(line))
            self.sync.handle_line(line)

    def barrier(self) -> None:
        """Returns once everything changed remotely before it has been handled."""
        self._barriers += 1
        name = f"zz-barrier-{self._barriers}"
        (self.remote / name).write_text(name)
        self.step(lambda: (self.local / name).exists())

    def put(self, rel: str, data: bytes | str, *, local: bool = False) -> None:
        path = (self.local if local else self.remote) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    def kinds(self, path: str) -> list[str]:
        return [e.kind for e in self.events if e.path == path]

    def ops(self, path: str) -> list[str]:
        return [e["op"] for e in self.lines if e.get("path") == path]


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    lp = Loop(tmp_path)
    yield lp
    for proc in lp.procs:
        proc.kill()
        proc.wait()


def _both(lp: Loop, rel: str, data: str) -> None:
    lp.put(rel, data)
    lp.put(rel, data, local=True)


def test_new_edited_and_deleted_files_sync(loop: Loop) -> None:
    _both(loop, "train.py", "v1")
    _both(loop, "old.py", "old")
    (loop.local / "train.py").chmod(0o755)
    loop.start()
    loop.put("notes/new.txt", "new")
    loop.put("train.py", "v2")
    (loop.remote / "old.py").unlink()
    loop.step(lambda: (loop.local / "train.py").read_text() == "v2")
    loop.step(
        lambda: (loop.local / "notes/new.txt").exists() and not (loop.local / "old.py").exists()
    )
    assert (loop.local / "notes/new.txt").read_text() == "new"
    assert (loop.local / "train.py").stat().st_mode & 0o777 == 0o755
    assert sorted((e.kind, e.path, e.detail) for e in loop.events) == [
        ("deleted", "old.py", ""),
        ("synced", "notes/new.txt", "created"),
        ("synced", "train.py", "updated"),
    ]


def test_changed_on_both_sides_keeps_local_and_writes_remote_copy(loop: Loop) -> None:
    _both(loop, "train.py", "v1")
    _both(loop, "gone.py", "v1")
    loop.start()
    loop.put("train.py", "mine", local=True)
    loop.put("gone.py", "mine", local=True)
    loop.put("train.py", "theirs")
    (loop.remote / "gone.py").unlink()
    loop.step(lambda: len(loop.kinds("train.py")) == 1 and len(loop.kinds("gone.py")) == 1)
    assert (loop.local / "train.py").read_text() == "mine"
    assert (loop.local / "train.remote.py").read_text() == "theirs"
    assert (loop.local / "gone.py").read_text() == "mine"
    assert [e.detail for e in loop.events if e.path == "gone.py"] == [
        "deleted in the notebook, changed here: kept"
    ]
    loop.put("train.py", "theirs, again")  # our untouched copy is refreshed
    loop.step(lambda: (loop.local / "train.remote.py").read_text() == "theirs, again")
    loop.put("train.remote.py", "looked at it", local=True)  # now it is the user's: a new one
    loop.put("train.py", "theirs, third")
    loop.step(lambda: (loop.local / "train.remote-2.py").exists())
    assert (loop.local / "train.remote-2.py").read_text() == "theirs, third"
    assert (loop.local / "train.py").read_text() == "mine"
    assert loop.kinds("train.py") == ["conflict"] * 3


def test_local_edits_made_before_the_session_are_never_clobbered(loop: Loop) -> None:
    _both(loop, "train.py", "v1")
    loop.start()
    loop.stop()
    (loop.tmp / "w.json").unlink()  # the pod was recreated from its image
    loop.put("train.py", "edited offline", local=True)
    loop.put("image-only.txt", "from the base image")
    assert loop.start()["resumed"] is False
    loop.barrier()
    assert (loop.local / "train.py").read_text() == "edited offline"
    assert not (loop.local / "image-only.txt").exists()
    loop.put("train.py", "v2 in the notebook")
    loop.step(lambda: loop.kinds("train.py") == ["conflict"])
    assert (loop.local / "train.py").read_text() == "edited offline"
    assert (loop.local / "train.remote.py").read_text() == "v2 in the notebook"


def test_a_resumed_watcher_reports_what_changed_while_disconnected(loop: Loop) -> None:
    _both(loop, "train.py", "v1")
    _both(loop, "old.py", "old")
    loop.start()
    loop.stop()
    loop.put("train.py", "v2")
    (loop.remote / "old.py").unlink()
    assert loop.start()["resumed"] is True
    loop.step(lambda: loop.kinds("train.py") == ["synced"] and loop.kinds("old.py") == ["deleted"])
    assert (loop.local / "train.py").read_text() == "v2"


def test_a_file_written_slowly_is_synced_once_and_complete(loop: Loop) -> None:
    loop.start()
    chunks = [bytes([i]) * 4096 for i in range(40)]
    with (loop.remote / "ckpt.bin").open("wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
            fh.flush()
            time.sleep(0.005)
    loop.step(lambda: loop.kinds("ckpt.bin") == ["synced"])
    loop.barrier()
    assert (loop.local / "ckpt.bin").read_bytes() == b"".join(chunks)
    assert loop.ops("ckpt.bin") == ["write"]


def test_excluded_paths_never_sync(loop: Loop) -> None:
    loop.start()
    for rel in [*EXCLUDED, *INCLUDED]:
        loop.put(rel, rel)
    loop.barrier()
    reported = {e["path"] for e in loop.lines if "path" in e}
    assert reported == {*INCLUDED, "zz-barrier-1"}
    synced = {p.relative_to(loop.local).as_posix() for p in loop.local.rglob("*") if p.is_file()}
    assert synced == {*INCLUDED, "zz-barrier-1", ".substratus/notebook-sync.json"}


@given(st.lists(st.sampled_from(["data", "model", "a", ".b", "c~", "__pycache__", "x.py", "y.tmp",
                                 "params.json", "z.pyc", ".~n.ipynb", "s.swp", "artifacts"]),
                min_size=1, max_size=4))  # fmt: skip
def test_both_sides_share_the_exclusion_rules(parts: list[str]) -> None:
    rel = "/".join(parts)
    assert script_excluded(rel) == excluded(rel)
    if len(parts) > 1 and excluded("/".join(parts[:-1])):
        assert excluded(rel)  # nothing under an excluded directory is synced


def test_exclusion_rules_by_example() -> None:
    assert all(excluded(p) for p in EXCLUDED)
    assert not any(excluded(p) for p in INCLUDED)


def test_a_rename_syncs_as_delete_and_write(loop: Loop) -> None:
    _both(loop, "a.py", "same")
    loop.start()
    (loop.remote / "a.py").rename(loop.remote / "b.py")
    loop.step(lambda: (loop.local / "b.py").exists() and not (loop.local / "a.py").exists())
    assert loop.ops("a.py")[-1:] == ["delete"] and loop.ops("b.py") == ["write"]
    assert {(e.kind, e.path) for e in loop.events} == {("deleted", "a.py"), ("synced", "b.py")}


def test_paths_outside_the_directory_are_rejected(tmp_path: Path) -> None:
    local, outside = tmp_path / "local", tmp_path / "outside"
    outside.mkdir()
    events: list[SyncEvent] = []
    sync = SyncBack(local, lambda rel: pytest.fail(f"read {rel}"), events.append)
    (local / "link").symlink_to(outside)
    (local / "file-link").symlink_to(outside / "f")
    bad = ["../escape", "/etc/passwd", "a/../../x", "a\\b", "", "./a", "a//b", "link/x",
           "file-link", "data/x", ".git/hooks/pre-commit"]  # fmt: skip
    for path in bad:
        sync.handle({"op": "write", "path": path, "sha256": "0" * 64, "size": 1})
        sync.handle({"op": "delete", "path": path})
    sync.handle({"op": "write", "sha256": None})
    assert {e.kind for e in events} == {"rejected"} and len(events) == 2 * len(bad) + 1
    assert list(outside.iterdir()) == [] and not (tmp_path / "escape").exists()
    run = subprocess.run(read_command("../escape", str(local), python=sys.executable), check=False)
    assert run.returncode == 2


def test_binary_content_round_trips_through_the_read_script(loop: Loop) -> None:
    def read_via_script(rel: str) -> bytes:
        cmd = read_command(rel, str(loop.remote), python=sys.executable)
        return decode_read_output(subprocess.run(cmd, capture_output=True, check=True).stdout)

    loop.read_remote = read_via_script
    loop.start()
    blob = bytes(range(256)) * 500 + os.urandom(70_001) + b"\r\n\x00"
    loop.put("blob.bin", blob)
    loop.put("empty.bin", b"")
    loop.step(
        lambda: loop.kinds("blob.bin") == ["synced"] and loop.kinds("empty.bin") == ["synced"]
    )
    assert (loop.local / "blob.bin").read_bytes() == blob
    assert (loop.local / "empty.bin").read_bytes() == b""


def test_read_output_is_verified(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 100_000)
    out = subprocess.run(read_command("f", str(tmp_path), python=sys.executable),
                         capture_output=True, check=True).stdout  # fmt: skip
    assert decode_read_output(out.replace(b"\n", b"\r\n")) == b"x" * 100_000
    for broken in [out[: len(out) // 2], out.replace(b"eHh4", b"eHh5", 1), b"", b"sha256 ab 1\n"]:
        with pytest.raises(ValueError):
            decode_read_output(broken)


def test_two_hundred_files_sync(loop: Loop) -> None:
    loop.start()
    for i in range(200):
        loop.put(f"dir{i % 10}/f{i:03}.txt", f"file {i}\n")
    loop.step(lambda: sum(e.kind == "synced" for e in loop.events) == 200)
    for i in range(200):
        assert (loop.local / f"dir{i % 10}/f{i:03}.txt").read_text() == f"file {i}\n"


def test_a_file_changing_while_fetched_is_fetched_again(tmp_path: Path) -> None:
    events: list[SyncEvent] = []
    answers = [b"half", b"whole", b"half", b"other"]
    sync = SyncBack(tmp_path, lambda rel: answers.pop(0), events.append)
    whole = hashlib.sha256(b"whole").hexdigest()
    sync.handle({"op": "write", "path": "a.txt", "sha256": whole, "size": 5})
    sync.handle({"op": "write", "path": "b.txt", "sha256": whole, "size": 5})
    assert (tmp_path / "a.txt").read_bytes() == b"whole" and not (tmp_path / "b.txt").exists()
    assert [(e.kind, e.path) for e in events] == [("synced", "a.txt"), ("error", "b.txt")]
    assert SyncBack(tmp_path, lambda rel: b"", events.append).base == {"a.txt": whole}


def test_bad_input_is_reported_never_raised(tmp_path: Path) -> None:
    def broken_transport(rel: str) -> bytes:
        raise OSError("exec failed")

    events: list[SyncEvent] = []
    sync = SyncBack(tmp_path, broken_transport, events.append)
    lines = ["not json", "[1]", "", '{"op": "bogus"}', '{"op": "error", "path": "x"}']
    sync.run(
        [*lines, '{"op": "write", "path": "y"}', '{"op": "write", "path": "z", "sha256": "no"}']
    )
    assert [e.kind for e in events] == ["error"] * 5 + ["rejected"]
    assert "exec failed" in events[4].detail
    assert remote_copy_name("notes.ipynb") == "notes.remote.ipynb"
    assert remote_copy_name("Makefile", 3) == "Makefile.remote-3"


def test_the_watcher_stops_on_a_missing_root(tmp_path: Path) -> None:
    cmd = watcher_command(str(tmp_path / "nope"), INTERVAL, state=None, python=sys.executable)
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2 and json.loads(run.stdout)["op"] == "error"
