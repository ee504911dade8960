"""The local side of notebook sync-back: apply the watcher's events to a local directory.

``SyncBack(local_dir, read_remote, report)`` takes the JSON lines of ``watcher.WATCHER_SCRIPT``
(``handle_line``, ``run``, or parsed with ``handle``) and mirrors the notebook's changes into
``local_dir`` — the directory the caller names, never the working directory implicitly (#226).
It knows no transport: ``read_remote(relpath)`` returns a remote file's bytes (over Kubernetes
exec: ``watcher.read_command`` + ``watcher.decode_read_output``; in tests: a local read).

The rule: **a local file is only ever replaced or deleted if it still holds the content last
synced** (its *base*, a sha256 kept per path in ``<local_dir>/.substratus/notebook-sync.json``).

- ``exists`` (the watcher's start-up baseline) records the notebook's content as the base and
  never touches a local file: what is there when a session starts is not synced down, and local
  edits made before it are never clobbered (a later change in the notebook is a conflict).
- ``write``: the bytes are fetched and checked against the event's sha256 (fetched again once on
  a mismatch: the file changed meanwhile; then an ``error``, and the watcher's next event brings
  it). Local file absent or equal to the base → written atomically (temp file + rename, the local
  file's mode kept) → ``synced``. Local file already equal to the notebook's → base recorded,
  nothing reported. Notebook's content still the base → nothing to bring. Otherwise the local file
  is kept, the notebook's version is written beside it as ``name.remote.ext`` (``name.remote-2.ext``
  … if that name is taken; a copy this class wrote and nobody changed since is reused) →
  ``conflict``.
- ``delete``: local file equal to the base → deleted (directories are kept) → ``deleted``;
  changed here or never synced → kept → ``conflict``; absent → nothing.
- ``error`` from the watcher → ``error``; ``hello`` → nothing. A path that is not relative
  POSIX, has ``..``, is excluded (``watcher.excluded``), is a symlink here or leads through one
  out of ``local_dir`` is ``rejected``: nothing outside ``local_dir`` is ever written.

``handle`` never raises: every failure becomes a reported ``SyncEvent``, so one bad file cannot
stop the loop (#245). Use one ``SyncBack`` from one thread at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from substratus.notebook.watcher import excluded

SyncKind = Literal["synced", "deleted", "conflict", "rejected", "error"]
STATE_FILE = Path(".substratus") / "notebook-sync.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SyncEvent:
    """One outcome: ``kind`` of what happened to ``path`` (relative POSIX), ``detail`` why."""

    kind: SyncKind
    path: str
    detail: str = ""


class _Rejected(Exception):
    """An event that must not be applied; the message says why."""


def remote_copy_name(name: str, n: int = 1) -> str:
    """``train.py`` → ``train.remote.py``; n=2 → ``train.remote-2.py``; ``Makefile.remote``."""
    suffix = Path(name).suffix
    stem = name[: len(name) - len(suffix)]
    return f"{stem}.remote{'' if n == 1 else f'-{n}'}{suffix}"


def _file_sha(path: Path) -> str | None:
    """The sha256 of a local file, ``None`` if there is none."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except FileNotFoundError:
        return None
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.substratus-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _mode(path: Path) -> int | None:
    return path.stat().st_mode & 0o7777 if path.exists() else None


class SyncBack:
    """Mirrors a running notebook's file changes into ``local_dir`` (see the module docstring)."""

    def __init__(
        self,
        local_dir: Path,
        read_remote: Callable[[str], bytes],
        report: Callable[[SyncEvent], None],
        *,
        state_file: Path | None = None,
    ) -> None:
        self.local_dir = Path(local_dir)
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = state_file if state_file is not None else self.local_dir / STATE_FILE
        self._root = os.path.realpath(self.local_dir)
        self._read_remote = read_remote
        self._report = report
        self._base: dict[str, str] = {}  # path → sha256 of the content last synced
        self._copies: dict[str, tuple[str, str]] = {}  # path → (conflict copy, its sha256)
        self._load()

    @property
    def base(self) -> dict[str, str]:
        """A copy of the recorded bases: relative path → sha256."""
        return dict(self._base)

    def run(self, lines: Iterable[str | bytes]) -> None:
        """Handle every line of a watcher's output until it ends."""
        for line in lines:
            self.handle_line(line)

    def handle_line(self, line: str | bytes) -> None:
        """Handle one JSON line of the watcher (blank lines are ignored)."""
        text = (line.decode("utf-8", "replace") if isinstance(line, bytes) else line).strip()
        if not text:
            return
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            self._emit("error", "", f"not a watcher event: {text[:200]!r}")
            return
        self.handle(event)

    def handle(self, event: Mapping[str, Any]) -> None:
        """Apply one watcher event; the outcome goes to ``report``, never an exception."""
        op, path = event.get("op"), event.get("path")
        shown = path if isinstance(path, str) else ""
        try:
            if op == "hello":
                return
            if op == "error":
                self._emit("error", shown, str(event.get("detail") or "error in the watcher"))
                return
            if op not in ("exists", "write", "delete"):
                self._emit("error", shown, f"unknown watcher event {op!r}")
                return
            if not isinstance(path, str):
                raise _Rejected("the event has no path")
            target = self._target(path)
            if op == "delete":
                self._on_delete(path, target)
                return
            sha, size = event.get("sha256"), event.get("size")
            if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
                raise _Rejected(f"bad sha256 {sha!r}")
            if not isinstance(size, int) or size < 0:
                size = None
            if op == "exists":
                self._on_exists(path, sha)
            else:
                self._on_write(path, target, sha, size)
        except _Rejected as exc:
            self._emit("rejected", shown, str(exc))
        except Exception as exc:
            self._emit("error", shown, f"{type(exc).__name__}: {exc}")

    # -- the three operations -------------------------------------------------------------------

    def _on_exists(self, rel: str, sha: str | None) -> None:
        if sha is None:
            changed = self._base.pop(rel, None) is not None
        else:
            changed = self._base.get(rel) != sha
            self._base[rel] = sha
        if changed:
            self._save()

    def _on_write(self, rel: str, target: Path, sha: str | None, size: int | None) -> None:
        if target.is_dir():
            raise IsADirectoryError(f"a directory is in the way: {target}")
        base = self._base.get(rel)
        if sha is not None:
            if _file_sha(target) == sha:
                self._set_base(rel, sha)
                return
            if sha == base:
                return  # the notebook still has what was synced last
        data = self._fetch(rel, sha, size)
        if data is None:
            return
        remote = hashlib.sha256(data).hexdigest()
        local = _file_sha(target)  # again: it may have been saved here meanwhile
        if local == remote:
            self._set_base(rel, remote)
        elif remote == base:
            return
        elif local is None or local == base:
            _write_atomic(target, data, _mode(target))
            self._set_base(rel, remote)
            self._emit("synced", rel, "created" if local is None else "updated")
        else:
            copy = self._conflict_copy(rel, target, data, remote)
            self._emit("conflict", rel, f"changed here and in the notebook: kept, theirs is {copy}")

    def _on_delete(self, rel: str, target: Path) -> None:
        base = self._base.pop(rel, None)
        if base is not None:
            self._save()
        local = _file_sha(target)
        if local is None:
            return
        if local == base:
            target.unlink()
            self._emit("deleted", rel)
        elif base is None:
            self._emit("conflict", rel, "deleted in the notebook, never synced here: kept")
        else:
            self._emit("conflict", rel, "deleted in the notebook, changed here: kept")

    # -- helpers --------------------------------------------------------------------------------

    def _fetch(self, rel: str, sha: str | None, size: int | None) -> bytes | None:
        """The remote bytes matching the event (two tries), else ``None`` (reported)."""
        for _ in range(2):
            data = self._read_remote(rel)
            if sha is None:
                if size is None or len(data) == size:
                    return data
            elif hashlib.sha256(data).hexdigest() == sha:
                return data
        self._emit(
            "error", rel, "changed in the notebook while being copied; its next change syncs"
        )
        return None

    def _conflict_copy(self, rel: str, target: Path, data: bytes, sha: str) -> str:
        """Write the notebook's version beside ``target``; its relative path."""
        previous = self._copies.get(rel)
        copy: Path | None = None
        if previous is not None:
            candidate = self.local_dir / previous[0]
            ours = candidate.parent == target.parent and not candidate.is_symlink()
            if ours and _file_sha(candidate) == previous[1]:
                copy = candidate  # our copy, untouched since: refresh it
        n = 1
        while copy is None:
            candidate = target.with_name(remote_copy_name(target.name, n))
            if not candidate.exists() and not candidate.is_symlink():
                copy = candidate
            n += 1
        _write_atomic(copy, data, _mode(target))
        copy_rel = copy.relative_to(self.local_dir).as_posix()
        self._copies[rel] = (copy_rel, sha)
        self._save()
        return copy_rel

    def _target(self, rel: str) -> Path:
        """The local path of a relative POSIX path, or ``_Rejected``."""
        parts = rel.split("/")
        if ".." in parts:
            raise _Rejected("leads out of the directory (..)")
        if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/") or Path(rel).anchor:
            raise _Rejected("not a relative POSIX path")
        if any(part in ("", ".") for part in parts):
            raise _Rejected("not a normalized path")
        if excluded(rel):
            raise _Rejected("excluded from sync")
        target = self.local_dir.joinpath(*parts)
        parent = os.path.realpath(target.parent)
        if parent != self._root and not parent.startswith(os.path.join(self._root, "")):
            raise _Rejected("leads out of the directory through a symlink")
        if target.is_symlink():
            raise _Rejected("is a symlink here")
        return target

    def _set_base(self, rel: str, sha: str) -> None:
        if self._base.get(rel) != sha:
            self._base[rel] = sha
            self._save()

    def _emit(self, kind: SyncKind, path: str, detail: str = "") -> None:
        self._report(SyncEvent(kind, path, detail))

    def _load(self) -> None:
        try:
            doc = json.loads(self.state_file.read_text(encoding="utf-8"))
            base, copies = doc["base"], doc.get("copies", {})
            self._base = {str(k): str(v) for k, v in base.items() if _SHA256.fullmatch(str(v))}
            self._copies = {str(k): (str(v[0]), str(v[1])) for k, v in copies.items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            self._base, self._copies = {}, {}
            self._emit(
                "error", "", f"sync state {self.state_file} unreadable, starting anew: {exc}"
            )

    def _save(self) -> None:
        doc = {"version": 1, "base": self._base, "copies": self._copies}
        _write_atomic(self.state_file, json.dumps(doc, indent=1, sort_keys=True).encode())
