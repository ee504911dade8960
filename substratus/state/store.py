"""One workspace's stored state: the base file plus its journal, read and written with CAS.

``StateStore`` is the state half of ``local.FileBackend`` (``Backend.read``/``write``). Files:
``<ws>.json`` (the base, ``StateFile.to_json()``), ``<ws>.journal`` (``journal`` lines, each one
write on top of the base) and ``<ws>.json.backup`` (the state before a backend object's first
write, so once per run: ``cp`` it over ``<ws>.json`` and remove the journal to go back).

- ``read()`` returns the base with the journal replayed and its token (``journal.Position``). It
  takes no lock and still sees one completed write: the base is only ever replaced by rename, the
  journal only grows by whole lines or is removed after a compaction made it stale; the base is
  read, then the journal, then the base's inode is checked again (a compaction in between: read
  again). Torn tails and provably stale lines are ignored; a corrupt journal, or one that does not
  belong to the base, is a ``DiagnosticError`` naming the files and the fix.
- ``write(state, expected_token, changed)`` holds the directory ``flock`` (``files.dir_guard``),
  compares the current token with ``expected_token`` (``StateConflict`` when they differ, nothing
  written), then appends one line for ``changed`` (``files.append_durably``: one ``os.write``,
  ``fsync``) when the journal stays below ``max(64 KiB, size of the base)``, and otherwise
  compacts: the journal's lines are sealed first (``journal.encode_seal``: one durable line
  naming the sha256 of the new base, the proof that they are in it; a journal with none of this
  base's lines is removed instead), then the whole state is written atomically
  (``files.atomic_write``: temp, ``fsync``, rename, ``fsync`` of the directory), then the journal
  is removed. It compacts too when a line could not be replayed exactly: no base yet, ``changed``
  empty or naming an address in neither state, a record count ``changed`` does not explain,
  another lineage or format version, a serial that is not the stored one plus one, a journal
  holding stale lines, or a sealed journal (a compaction that stopped before its rename). A
  journal only grows to the size of the base between compactions, so an apply of N resources
  writes O(N) bytes.
- ``delete(expected_token)`` (``workspace delete``) is compare-and-swap too: it seals the
  journal's lines as deleted (``"sealed":null``), then removes the base, the journal and the
  backup; a journal left by a crash in between is ignored by readers.
- Crash safety: a crash mid-append leaves a torn tail (ignored; the next append cuts it off); a
  crash during a compaction leaves the old base and its journal, perhaps sealed (before the
  rename), or the new base and the sealed, stale journal (after it): ``read`` returns the state
  before or after the write. A journal that is neither (the base was edited, damaged or replaced
  by hand) is never ignored: ``read`` and ``write`` refuse it (``snapshot``), and
  ``recovery.recover`` rebuilds it.
- A writer re-reads nothing it already knows: the base is identified by ``stat`` (inode, size,
  mtime, ctime) and its first bytes (which hold the lineage and serial), the journal by its inode,
  and only the lines appended since its last read or write are scanned. Anything else (another
  process compacted, a file was edited) reloads both files.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path

from substratus.engine.backend import StateConflict
from substratus.engine.statefile import StateFile
from substratus.state.files import (
    TEMP_SUFFIX,
    append_durably,
    atomic_write,
    dir_guard,
    ensure_dir,
    fsync_dir,
    os_failure,
    read_file,
    sha256_hex,
    stat_key,
)
from substratus.state.journal import Position, appendable, encode_line, encode_seal, scan
from substratus.state.snapshot import HEAD_BYTES, StateFiles, Stored

MIN_JOURNAL_BYTES = 64 * 1024


class StateStore:
    """The base + journal files of one workspace (see the module docstring)."""

    def __init__(self, state_path: Path, backup_path: Path, *, journal: bool = True) -> None:
        self.files = StateFiles(state_path, backup_path)
        self.state_path = state_path
        self.backup_path = backup_path
        self.journal_path = self.files.journal_path
        self.journal = journal
        self._known: Stored | None = None
        self._backed_up = False

    def read(self) -> tuple[StateFile | None, str | None]:
        loaded = self.files.load()
        self._known = None if loaded is None else loaded[0]
        if loaded is None:
            return None, None
        stored, doc = loaded
        return self.files.validate(doc, stored.at.lines > 0), stored.at.token

    def write(self, state: StateFile, expected_token: str | None, changed: list[str]) -> str:
        directory = self.state_path.parent
        if self._known is None:  # made once: a directory removed after is an error on write
            ensure_dir(directory)
        with dir_guard(directory) as guarded:
            current = self._current()
            if (current.at.token if current else None) != expected_token:
                raise StateConflict(self._conflict_message(expected_token, current))
            unique = list(dict.fromkeys(changed))
            line = self._line(state, current, unique)
            data = state.to_json().encode() if line is None else b""
            try:
                if guarded:  # no other substratus writer is mid-write: leftovers are orphans
                    self._remove_orphaned_temps()
                if current is not None and not self._backed_up:
                    atomic_write(self.backup_path, self._snapshot(current))
                    self._backed_up = True
                if line is None or current is None:
                    known = self._compact(state, current, data)
                else:
                    known = self._append(state, current, line, unique)
            except BaseException as exc:
                self._known = None
                if isinstance(exc, OSError):
                    raise os_failure("write the state to", self.state_path, exc) from exc
                raise
            self._known = known
        return known.at.token

    def delete(self, expected_token: str | None) -> None:
        """Remove the state, its journal and its backup (``workspace delete``), compare-and-swap
        on ``expected_token``. A crash midway leaves the state before or after: the journal's
        lines are sealed as deleted (``journal``) before the base goes, so a journal left
        without its base is ignored."""
        directory = self.state_path.parent
        if not directory.is_dir() and expected_token is None:
            return
        with dir_guard(directory):
            current = self._current()
            if (current.at.token if current else None) != expected_token:
                raise StateConflict(self._conflict_message(expected_token, current))
            self._known = None
            try:
                if current is not None and current.journal_id is not None:
                    self._retire_journal(current, None)
                for path in (self.state_path, self.journal_path, self.backup_path):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                fsync_dir(directory)
            except OSError as exc:
                raise os_failure("delete the state", self.state_path, exc) from exc

    # -- writing ------------------------------------------------------------------------------

    def _line(self, state: StateFile, current: Stored | None, changed: list[str]) -> bytes | None:
        """The journal line for this write, or ``None`` to compact."""
        if not self.journal or current is None or not changed:
            return None
        at = current.at
        if current.sealed or (current.stale and at.lines):  # a compaction began; two bases
            return None
        if not appendable(state, (at.lineage, at.version, at.serial), current.addresses, changed):
            return None
        line = encode_line(at.base, state, changed)
        start = 0 if current.stale else current.journal_end
        if start + len(line) >= max(MIN_JOURNAL_BYTES, current.base_size):
            return None
        return line

    def _append(self, state: StateFile, current: Stored, line: bytes, changed: list[str]) -> Stored:
        after = scan(line, current.at).at  # exactly what a reader will compute
        size: int | None = current.journal_end
        if current.journal_id is None or current.stale:
            if current.stale:  # only stale lines: start a new file, readers keep the old one
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.journal_path)
            size = None
        info = append_durably(self.journal_path, line, size)
        for address in changed:
            if address in state.resources:
                current.addresses.add(address)
            else:
                current.addresses.discard(address)
        end = (size or 0) + len(line)
        journal_id = (info.st_dev, info.st_ino)
        return replace(
            current,
            at=after,
            journal_id=journal_id,
            journal_end=end,
            last_line=line,
            stale=0,
        )

    def _compact(self, state: StateFile, current: Stored | None, data: bytes) -> Stored:
        sha = sha256_hex(data)
        if current is not None and sha == current.at.base:  # the base already holds it
            if current.journal_id is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.journal_path)
                fsync_dir(self.state_path.parent)  # its lines would apply to this base again
        else:
            if current is not None and current.journal_id is not None:
                self._retire_journal(current, sha)
            atomic_write(self.state_path, data)
            with contextlib.suppress(OSError):  # provably stale now: harmless if it stays
                os.unlink(self.journal_path)
        info = os.stat(self.state_path)
        at = Position(sha, state.lineage, state.serial, state.version)
        return Stored(stat_key(info), data[:HEAD_BYTES], len(data), at, set(state.resources))

    def _retire_journal(self, current: Stored, installed: str | None) -> None:
        """Before the base ``current`` is replaced by the one whose sha256 is ``installed``
        (``None``: removed): seal the journal's lines of this base, the proof that they are in
        the new base, or remove a journal that holds none (its stale lines prove nothing then)."""
        if current.at.lines:
            seal = encode_seal(current.at.base, installed)
            append_durably(self.journal_path, seal, current.journal_end)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.journal_path)
        fsync_dir(self.state_path.parent)

    def _snapshot(self, current: Stored) -> bytes:
        """The bytes of the stored state ``current``, for the backup."""
        if not current.at.lines:
            got = read_file(self.state_path)
            return b"" if got is None else got[0]
        loaded = self.files.load()
        return b"" if loaded is None else self.files.validate(loaded[1], True).to_json().encode()

    # -- reading ------------------------------------------------------------------------------

    def _current(self) -> Stored | None:
        """The stored version now (call with the directory lock held)."""
        known, self._known = self._known, None
        current = self.files.refresh(known) if known is not None else None
        if current is None:
            loaded = self.files.load()
            current = None if loaded is None else loaded[0]
        self._known = current
        return current

    def _conflict_message(self, expected: str | None, current: Stored | None) -> str:
        if current is None:
            found = "the state file was deleted"
        else:
            found = f"it is now {_version(current.at.token)} (serial {current.at.serial})"
        was = _version(expected) if expected else "no state"
        return (
            f"the state {self.state_path} was changed by another process since it was read "
            f"(read {was}; {found}); nothing was written. Run the command again to work from "
            "the current state."
        )

    def _remove_orphaned_temps(self) -> None:
        directory = self.state_path.parent
        prefixes = tuple(f".{path.name}." for path in (self.state_path, self.backup_path))
        for entry in os.listdir(directory):  # one listing (this runs on every write)
            if entry.startswith(prefixes) and entry.endswith(TEMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(directory / entry)


def _version(token: str) -> str:
    """A token as the user is told it: the base's sha256 prefix, and the journal line and chain
    prefix on top of it, so that two versions of one base never read the same."""
    base, _, rest = token.partition(":")
    lines, _, chain = rest.partition(":")
    return f"version {base[:12]}" + (f" + {lines} journal line(s) ({chain[:8]})" if lines else "")
