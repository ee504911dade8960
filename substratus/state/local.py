"""The local state backend: ``file://DIR`` or a plain directory path (POSIX).

Files, per workspace ``<ws>``, in ``DIR`` (created on first write or lock):

- ``<ws>.json``: the state, ``StateFile.to_json()``. The version token is the sha256 hex of its
  bytes (``None`` when the file does not exist).
- ``<ws>.json.backup``: the previous state, kept before the first overwrite made by a backend
  object (so once per run).
- ``<ws>.lock``: the lock, ``LockInfo`` JSON with a fresh uuid4 ``id``, created with ``O_EXCL``.
- ``.<ws>.json.<random>.tmp``: transient, during a write.

Contracts (``engine.backend``), and where they differ from Terraform's local backend:

- ``write`` is compare-and-swap: the current token is re-read and compared with
  ``expected_token`` while holding a short directory ``flock`` (``files.dir_guard``), so two
  substratus writers on this host can never both pass the check; the loser gets
  ``StateConflict`` and nothing is written. Terraform truncates and rewrites in place with no check.
- ``write`` is atomic and durable (``files.atomic_write``): a crash leaves the old or the new
  state, never a torn file.
- ``changed`` is ignored: the whole file is rewritten. Locally that is fine: a write is one
  sequential write of a small file (kilobytes for tens of ML resources, each of which takes
  minutes to apply) plus two fsyncs, and replacing the whole file is what gives every reader a
  consistent snapshot with one token. A journal would add recovery and compaction for no gain.
- The lock is a file, so any process (``force-unlock``) can remove it, and a lock left by a dead
  process on this host is reported as such with the command that removes it. A lock file that is
  empty or not JSON (a crash while creating it) is reported with holder ``unknown`` and the id
  ``invalid-<sha256 prefix of its bytes>``, which ``force_unlock`` accepts.
- Unreadable/corrupt state and file-system errors (permissions, read-only, full disk) are
  ``DiagnosticError``s naming the path and the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import uuid
from pathlib import Path
from urllib.parse import unquote

from substratus.engine.backend import LockHeld, LockInfo, LockNotFound, StateConflict
from substratus.engine.diagnostic import fail
from substratus.engine.statefile import STATE_FORMAT_VERSION, StateFile
from substratus.state.files import (
    TEMP_SUFFIX,
    atomic_write,
    dir_guard,
    ensure_dir,
    os_failure,
    read_bytes,
    sha256_hex,
    write_all,
)
from substratus.state.lockfile import encode_lock, held_note, read_lock
from substratus.state.locking import lock_with_timeout
from substratus.state.workspace import DEFAULT_WORKSPACE, check_workspace, is_workspace_name

__all__ = ["FileBackend", "lock_with_timeout", "resolve_directory"]


def resolve_directory(url: str | os.PathLike[str], base_dir: Path | None = None) -> Path:
    """``file://DIR``, ``file:///abs``, ``file://localhost/abs`` or a path → absolute directory.

    A ``file://`` URL is percent-decoded; ``file://rel/dir`` is read as the relative path
    ``rel/dir``. Relative paths are taken relative to ``base_dir`` (default: the current directory);
    ``~`` is expanded.
    """
    text = os.fspath(url)
    if text.startswith("file://"):
        text = unquote(text.removeprefix("file://"))
        if text.startswith("localhost/"):
            text = text.removeprefix("localhost")
    if not text.strip():
        raise fail(
            f"the local state backend URL {os.fspath(url)!r} names no directory",
            "Use `file://DIR` or a directory path, e.g. `file://.substratus/state`.",
        )
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (base_dir if base_dir is not None else Path.cwd()) / path
    return path.absolute()


class FileBackend:
    """``Backend`` keeping ``<workspace>.json`` and ``<workspace>.lock`` in one directory."""

    def __init__(
        self,
        url: str | os.PathLike[str],
        workspace: str = DEFAULT_WORKSPACE,
        base_dir: Path | None = None,
    ) -> None:
        self.workspace = check_workspace(workspace)
        self.directory = resolve_directory(url, base_dir)
        self.url = self.directory.as_uri()
        self.state_path = self.directory / f"{workspace}.json"
        self.backup_path = self.directory / f"{workspace}.json.backup"
        self.lock_path = self.directory / f"{workspace}.lock"
        self._backed_up = False

    def __repr__(self) -> str:
        return f"FileBackend({self.url!r}, workspace={self.workspace!r})"

    # -- state -------------------------------------------------------------------------------

    def read(self) -> tuple[StateFile | None, str | None]:
        data = read_bytes(self.state_path)
        if data is None:
            return None, None
        return self._parse(data), sha256_hex(data)

    def write(self, state: StateFile, expected_token: str | None, changed: list[str]) -> str:
        del changed  # the whole file is rewritten; see the module docstring
        data = state.to_json().encode()
        ensure_dir(self.directory)
        with dir_guard(self.directory) as guarded:
            current = read_bytes(self.state_path)
            current_token = None if current is None else sha256_hex(current)
            if current_token != expected_token:
                raise StateConflict(self._conflict_message(expected_token, current))
            try:
                if guarded:  # no other substratus writer is mid-write: leftovers are orphans
                    self._remove_orphaned_temps()
                if current is not None and not self._backed_up:
                    atomic_write(self.backup_path, current)
                    self._backed_up = True
                atomic_write(self.state_path, data)
            except OSError as exc:
                raise os_failure("write the state to", self.state_path, exc) from exc
        return sha256_hex(data)

    def workspaces(self) -> list[str]:
        names = {DEFAULT_WORKSPACE}
        try:
            entries = os.listdir(self.directory)
        except FileNotFoundError:
            entries = []
        except OSError as exc:
            raise os_failure("list the workspaces in", self.directory, exc) from exc
        for entry in entries:
            name = entry.removesuffix(".json")
            if name != entry and is_workspace_name(name) and (self.directory / entry).is_file():
                names.add(name)
        return sorted(names)

    # -- lock --------------------------------------------------------------------------------

    def lock(self, info: LockInfo) -> str:
        ensure_dir(self.directory)
        record = dataclasses.replace(info, id=str(uuid.uuid4()), path=str(self.lock_path))
        payload = encode_lock(record)
        with dir_guard(self.directory):
            while True:
                try:
                    fd = os.open(
                        self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666
                    )
                    break
                except FileExistsError:
                    holder = read_lock(self.lock_path)
                    if holder is not None:
                        raise LockHeld(holder, held_note(holder)) from None
                    # removed (outside substratus) between the two calls: try again
                except OSError as exc:
                    raise os_failure("create the lock file", self.lock_path, exc) from exc
            try:
                try:
                    write_all(fd, payload)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except BaseException as exc:  # never leave a half-written lock behind
                with contextlib.suppress(OSError):
                    os.unlink(self.lock_path)
                if isinstance(exc, OSError):
                    raise os_failure("write the lock file", self.lock_path, exc) from exc
                raise
        return record.id

    def unlock(self, lock_id: str) -> None:
        self._remove_lock(lock_id, "unlock")

    def force_unlock(self, lock_id: str) -> LockInfo:
        return self._remove_lock(lock_id, "force-unlock")

    def current_lock(self) -> LockInfo | None:
        if not self.directory.is_dir():
            return None
        with dir_guard(self.directory):
            return read_lock(self.lock_path)

    # -- helpers -----------------------------------------------------------------------------

    def _parse(self, data: bytes) -> StateFile:
        try:
            return StateFile.from_json(data)
        except ValueError as exc:
            reason = str(exc)
        if _other_format_version(data):
            raise fail(f"cannot read the state file {self.state_path}: {reason}")
        raise fail(
            f"the state file {self.state_path} is corrupt: {reason}",
            f"Nothing was changed. If {self.backup_path} exists and holds the state you expect, "
            f"restore it (`cp {self.backup_path} {self.state_path}`); otherwise put a good copy in "
            f"place with `substratus state push FILE`.",
        )

    def _conflict_message(self, expected: str | None, current: bytes | None) -> str:
        if current is None:
            found = "the state file was deleted"
        else:
            serial = _serial(current)
            found = f"it is now version {sha256_hex(current)[:12]}" + (
                f" (serial {serial})" if serial is not None else ""
            )
        was = f"version {expected[:12]}" if expected else "no state"
        return (
            f"the state {self.state_path} was changed by another process since it was read "
            f"(read {was}; {found}); nothing was written. Run the command again to work from "
            "the current state."
        )

    def _remove_orphaned_temps(self) -> None:
        for name in (self.state_path.name, self.backup_path.name):
            for leftover in self.directory.glob(f".{name}.*{TEMP_SUFFIX}"):
                with contextlib.suppress(OSError):
                    leftover.unlink()

    def _remove_lock(self, lock_id: str, verb: str) -> LockInfo:
        if not self.directory.is_dir():
            raise LockNotFound(self._no_lock(lock_id, verb))
        with dir_guard(self.directory):
            holder = read_lock(self.lock_path)
            if holder is None:
                raise LockNotFound(self._no_lock(lock_id, verb))
            if holder.id != lock_id:
                raise LockNotFound(
                    f"cannot {verb} {lock_id!r}: the lock on workspace {self.workspace!r} "
                    f"({self.lock_path}) has id {holder.id!r}, held by {holder.who} "
                    f"(pid {holder.pid}, {holder.operation}) since {holder.created}"
                )
            try:
                os.unlink(self.lock_path)
            except FileNotFoundError:
                raise LockNotFound(self._no_lock(lock_id, verb)) from None
            except OSError as exc:
                raise os_failure("remove the lock file", self.lock_path, exc) from exc
        return holder

    def _no_lock(self, lock_id: str, verb: str) -> str:
        return (
            f"cannot {verb} {lock_id!r}: there is no lock on workspace {self.workspace!r} "
            f"({self.lock_path} does not exist)"
        )


def _serial(data: bytes) -> int | None:
    with contextlib.suppress(ValueError):
        doc = json.loads(data)
        if isinstance(doc, dict) and isinstance(doc.get("serial"), int):
            return int(doc["serial"])
    return None


def _other_format_version(data: bytes) -> bool:
    with contextlib.suppress(ValueError):
        doc = json.loads(data)
        if isinstance(doc, dict) and isinstance(doc.get("version"), int):
            return bool(doc["version"] != STATE_FORMAT_VERSION)
    return False
