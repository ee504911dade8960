"""The local state backend: ``file://DIR`` or a plain directory path (POSIX).

Files, per workspace ``<ws>``, in ``DIR`` (created on first write or lock):

- ``<ws>.json``: the base state, ``StateFile.to_json()``, rewritten whole (compacted) now and then.
- ``<ws>.journal``: one JSON line per write since the last compaction (``journal``); the state is
  the base with these lines replayed. Absent right after a compaction.
- ``<ws>.json.backup``: the state before a backend object's first write (so once per run).
- ``<ws>.json.damaged``, ``<ws>.journal.damaged``: the files a ``recover`` replaced.
- ``<ws>.lock``: the lock, ``LockInfo`` JSON with a fresh uuid4 ``id``, created with ``O_EXCL``.
- ``.<ws>.json.<random>.tmp``: transient, during a compaction.

Contracts (``engine.backend``), and where they differ from Terraform's local backend:

- ``read``/``write`` are ``store.StateStore``'s: ``write`` is compare-and-swap under a short
  directory ``flock`` (``files.dir_guard``), so two substratus writers on this host can never both
  pass the check; the loser gets ``StateConflict`` and nothing is written. Terraform truncates and
  rewrites in place with no check.
- ``write`` is durable when it returns and crash-safe: a crash at any point leaves the state before
  or after that write, never a mix, never an error. ``read`` needs no lock for a consistent state.
- ``write`` is incremental: it appends the records of the ``changed`` addresses to the journal and
  rewrites the whole base only once the journal has grown to the size of the base, so one apply of
  N resources writes O(N) bytes, not O(N²) (Terraform rewrites the whole state on every write,
  hashicorp/terraform#34296). ``FileBackend(..., journal=False)`` rewrites the whole base on
  every write (the behaviour before the journal; for comparison).
- The lock is a file, so any process (``force-unlock``) can remove it. A lock left by a process
  of this host that is gone (crashed, killed) is taken over by the next ``lock``, under the
  directory ``flock`` (``takeover`` says whose it was); where the file system cannot ``flock``, it
  is reported as such with the command that removes it. A holder on another host is never
  presumed gone: ``force-unlock`` is for those. A lock file that is
  empty or not JSON (a crash while creating it) is reported with holder ``unknown`` and the id
  ``invalid-<sha256 prefix of its bytes>``, which ``force_unlock`` accepts.
- A damaged state is never read as a smaller one: a journal that does not belong to its base (the
  base edited, damaged, replaced by another copy or removed) makes ``read`` and ``write`` raise a
  ``DiagnosticError`` naming both files; ``recover(source)`` (``Recovers``, ``recovery``)
  rebuilds the state from the journal and the backup, the base or a copy the user names.
  ``delete_workspace(token)`` removes a workspace's files with compare-and-swap (``store``).
- Unreadable/corrupt state and file-system errors (permissions, read-only, full disk) are
  ``DiagnosticError``s naming the path and the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from pathlib import Path
from urllib.parse import unquote

from substratus.engine.backend import LockHeld, LockInfo, LockNotFound
from substratus.engine.diagnostic import fail
from substratus.engine.statefile import StateFile
from substratus.state.files import dir_guard, ensure_dir, os_failure, write_all
from substratus.state.lockfile import abandoned, encode_lock, held_note, read_lock
from substratus.state.locking import lock_with_timeout
from substratus.state.store import StateStore
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
        *,
        journal: bool = True,
    ) -> None:
        self.workspace = check_workspace(workspace)
        self.directory = resolve_directory(url, base_dir)
        self.url = self.directory.as_uri()
        self.state_path = self.directory / f"{workspace}.json"
        self.backup_path = self.directory / f"{workspace}.json.backup"
        self.lock_path = self.directory / f"{workspace}.lock"
        self.store = StateStore(self.state_path, self.backup_path, journal=journal)
        self.journal_path = self.store.journal_path
        self.takeover: LockInfo | None = None  # set by ``lock``: the abandoned lock taken over

    def __repr__(self) -> str:
        return f"FileBackend({self.url!r}, workspace={self.workspace!r})"

    # -- state -------------------------------------------------------------------------------

    def read(self) -> tuple[StateFile | None, str | None]:
        return self.store.read()

    def write(self, state: StateFile, expected_token: str | None, changed: list[str]) -> str:
        return self.store.write(state, expected_token, changed)

    def recover(self, source: tuple[str, bytes] | None) -> str:
        from substratus.state.recovery import recover  # the journal's rebuilding: only here

        return recover(self.store.files, source)

    def delete_workspace(self, expected_token: str | None) -> None:
        self.store.delete(expected_token)

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
        """Take the lock; a lock whose holder ran on this host and is gone is taken over (and
        ``takeover`` set to it), under the directory ``flock`` so that of two runs finding it
        only one takes it. Without the ``flock`` it is reported as held, with how to remove it."""
        ensure_dir(self.directory)
        record = dataclasses.replace(info, id=str(uuid.uuid4()), path=str(self.lock_path))
        self.takeover = None
        with dir_guard(self.directory) as guarded:
            fd = self._create_lock(guarded)
            try:
                try:
                    write_all(fd, encode_lock(record))
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

    def _create_lock(self, guarded: bool) -> int:
        """The descriptor of a new, empty lock file (``O_EXCL``); call under ``dir_guard``."""
        while True:
            try:
                return os.open(
                    self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666
                )
            except FileExistsError:
                holder = read_lock(self.lock_path)
                if holder is None:
                    continue  # removed (outside substratus) between the two calls: try again
                if not (guarded and abandoned(holder)):
                    raise LockHeld(holder, held_note(holder)) from None
                try:
                    os.unlink(self.lock_path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise os_failure("take over the lock file", self.lock_path, exc) from exc
                self.takeover = holder
            except OSError as exc:
                raise os_failure("create the lock file", self.lock_path, exc) from exc

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
