"""Reading one workspace's stored state: the base file with its journal replayed.

``StateFiles`` names the files (``<ws>.json``, ``<ws>.journal``, ``<ws>.json.backup``) and reads
them; nothing here writes.

- ``load()`` reads both files from scratch and returns a ``Stored`` (the version: token, what the
  writer needs to append without re-reading) and the decoded state document. It needs no lock:
  the base is read, then the journal, then the base's inode is checked again (when a compaction
  replaced it in between, everything is read again, up to ``READ_ATTEMPTS`` times). Whatever the
  timing, only lines whose ``base`` is the sha256 of the base bytes read are replayed, so the
  result is the base plus a prefix of its own lines: the state after one completed write.
- A damaged state is never read as a smaller one (``journal`` has the rules): when the journal
  holds writes that are neither on top of this base nor provably in it (the base was edited,
  damaged, or replaced by another copy), when the base is not valid JSON while the journal holds
  writes, or when there is no base but a journal holding writes not deleted with it, ``load``
  raises a ``DiagnosticError`` (``damage``) naming both files and ``substratus state recover``.
  Seen while a compaction replaced the base on every attempt, it is "kept changing" instead.
- ``refresh(known)`` brings a ``Stored`` up to date by reading only what was appended to the
  journal since, when ``stat`` (inode, size, mtime, ctime) and the first ``HEAD_BYTES`` of the
  base (which hold its lineage and serial) show the base is the same file, and the journal is the
  same file (inode), no shorter, still ending its known part with the known last line; ``None``
  otherwise (then ``load``, which also reports anything foreign appended). Substratus only ever
  appends to a journal, so this sees every change it makes; an edit by another tool that
  rewrites the journal in place and keeps its last line and length goes unnoticed until the next
  ``load`` (editors that save by rename are noticed).
- ``validate(doc)`` turns the document into a ``StateFile``. Every failure (corrupt base, corrupt
  journal: a bad line before the last, a serial gap, another lineage) is a ``DiagnosticError``
  naming the file and the fix (restore the backup, set the journal aside, ``state push``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from substratus.engine.diagnostic import DiagnosticError, fail
from substratus.engine.statefile import STATE_FORMAT_VERSION, StateFile
from substratus.state import damage
from substratus.state.files import os_failure, read_file, sha256_hex, stat_key
from substratus.state.journal import (
    Foreign,
    JournalCorrupt,
    Position,
    Scan,
    decode_base,
    describe,
    replay,
    scan,
)

HEAD_BYTES = 512
READ_ATTEMPTS = 5
NO_BASE = Position("", "", 0, STATE_FORMAT_VERSION)  # what a journal is scanned against, no base


@dataclass
class Stored:
    """The stored version as last seen: enough to check a token and append without a re-read."""

    base_key: tuple[int, ...]
    head: bytes
    base_size: int
    at: Position
    addresses: set[str]
    journal_id: tuple[int, int] | None = None
    journal_end: int = 0  # end of the last whole line (a torn tail may follow)
    last_line: bytes = b""  # the line that ends at journal_end
    stale: int = 0
    sealed: bool = False  # the journal ends with a seal of this base: compact next


@dataclass(frozen=True)
class StateFiles:
    state_path: Path
    backup_path: Path

    @property
    def journal_path(self) -> Path:
        return self.state_path.with_suffix(".journal")

    def damaged_path(self, path: Path) -> Path:
        """Where ``state recover`` keeps a copy of a damaged file."""
        return path.with_name(f"{path.name}.damaged")

    def load(self) -> tuple[Stored, dict[str, Any]] | None:
        """Read the base and the journal from scratch (``None``: there is no base)."""
        for attempt in range(1, READ_ATTEMPTS + 1):
            last = attempt == READ_ATTEMPTS
            got = read_file(self.state_path)
            journal, journal_info = read_file(self.journal_path) or (b"", None)
            if got is None:
                if self.state_path.exists() and not last:
                    continue  # the first write created it meanwhile
                self._check_orphan(journal)
                return None
            data, info = got
            replaced = _replaced(self.state_path, info)
            if replaced and not last:
                continue
            doc = self._base_doc(data, journal)
            at = Position(sha256_hex(data), doc["lineage"], doc["serial"], doc["version"])
            try:
                found = scan(journal, at)
            except JournalCorrupt as exc:
                if not last:  # perhaps read while a writer cut a torn tail
                    continue
                raise self.journal_failure(exc) from None
            if found.foreign:
                if replaced:  # on every attempt: a compaction each time, not damage
                    raise damage.kept_changing(str(self.state_path))
                raise self.mismatch(found.foreign, doc["serial"])
            replay(doc, found.entries)
            journal_id = _file_id(journal_info) if journal_info is not None else None
            return self._stored(data, info, found, set(doc["resources"]), journal_id), doc
        raise AssertionError("unreachable")

    def _stored(
        self,
        data: bytes,
        info: os.stat_result,
        found: Scan,
        addresses: set[str],
        journal_id: tuple[int, int] | None,
    ) -> Stored:
        return Stored(
            stat_key(info),
            data[:HEAD_BYTES],
            len(data),
            found.at,
            addresses,
            journal_id,
            found.end,
            found.last,
            found.stale,
            found.sealed,
        )

    def refresh(self, known: Stored) -> Stored | None:
        """``known`` updated with the lines appended since; ``None`` when a full load is needed."""
        head = read_file(self.state_path, 0, HEAD_BYTES)
        if head is None or stat_key(head[1]) != known.base_key or head[0] != known.head:
            return None
        try:
            info = os.stat(self.journal_path)
        except FileNotFoundError:
            return known if known.journal_id is None else None
        except OSError as exc:
            raise os_failure("read", self.journal_path, exc) from exc
        journal_id = _file_id(info)
        if known.journal_id not in (None, journal_id) or info.st_size < known.journal_end:
            return None
        back = len(known.last_line)  # read again to check the file was only appended to
        got = read_file(self.journal_path, known.journal_end - back)
        if got is None or _file_id(got[1]) != journal_id or got[0][:back] != known.last_line:
            return None
        try:
            found = scan(got[0][back:], known.at)
        except JournalCorrupt as exc:
            raise self.journal_failure(exc) from None
        if found.foreign:
            return None  # ``load`` says what is wrong
        for entry in found.entries:
            known.addresses.update(entry["set"])
            known.addresses.difference_update(entry["remove"])
        return replace(
            known,
            at=found.at,
            journal_id=journal_id,
            journal_end=known.journal_end + found.end,
            last_line=found.last or known.last_line,
            stale=known.stale + found.stale,
            sealed=known.sealed or found.sealed,
        )

    def validate(self, doc: dict[str, Any], journaled: bool) -> StateFile:
        """The ``StateFile`` of a document from ``load`` (``journaled``: lines were replayed)."""
        what = f"the state file {self.state_path}"
        if journaled:
            doc["resources"] = dict(sorted(doc["resources"].items()))
            what = f"the state {self.state_path} with its journal {self.journal_path}"
        if doc.get("version") != STATE_FORMAT_VERSION:
            raise fail(
                f"cannot read {what}: state format version {doc.get('version')!r} is not "
                f"supported (this substratus reads version {STATE_FORMAT_VERSION}); upgrade "
                "substratus"
            )
        try:
            return StateFile.model_validate(doc)
        except Exception as exc:  # pydantic.ValidationError
            raise self.corrupt(
                f"{what} is corrupt: the state document is malformed: {exc}"
            ) from exc

    def _base_doc(self, data: bytes, journal: bytes) -> dict[str, Any]:
        def corrupt(summary: str) -> DiagnosticError:
            try:  # the writes on top of the base, which any other sha256 makes foreign
                writes = scan(journal, replace(NO_BASE, base=sha256_hex(data))).foreign
            except JournalCorrupt:
                writes = []  # reported once the base is readable again
            if not writes:
                return self.corrupt(summary)
            return damage.damaged_base(
                str(self.state_path),
                str(self.journal_path),
                summary,
                describe(writes),
                self.recover_command,
                self._manual(writes),
            )

        return decode_base(data, f"the state file {self.state_path}", corrupt)

    def _check_orphan(self, journal: bytes) -> None:
        """Raise when ``journal``, found without a base, holds writes not deleted with it."""
        try:
            writes = scan(journal, NO_BASE).foreign
        except JournalCorrupt as exc:
            raise self.journal_failure(exc) from None
        if writes:
            raise damage.no_base(
                str(self.state_path),
                str(self.journal_path),
                describe(writes),
                self.recover_command,
                self._manual(writes),
            )

    def mismatch(self, foreign: list[Foreign], serial: int) -> DiagnosticError:
        return damage.mismatch(
            str(self.state_path),
            str(self.journal_path),
            describe(foreign),
            serial,
            self.recover_command,
            self._manual(foreign),
        )

    @property
    def recover_command(self) -> str:
        url = self.state_path.parent.absolute().as_uri()
        return damage.recover_command(url, self.state_path.name.removesuffix(".json"))

    def _manual(self, foreign: list[Foreign]) -> str:
        bases = sorted({f.base for f in foreign})
        written_on = f" (its sha256 is {bases[0]})" if len(bases) == 1 else ""
        return (
            f"It replays the journal over the backup {self.backup_path} when the backup holds "
            "the state the journal continues (name another copy with --from FILE), and keeps "
            f"the damaged files as {self.damaged_path(self.state_path)} and "
            f"{self.damaged_path(self.journal_path)}. To repair by hand instead, put back the "
            f"copy of {self.state_path} the journal was written on{written_on}."
        )

    def corrupt(self, summary: str) -> DiagnosticError:
        state, backup, journal = self.state_path, self.backup_path, self.journal_path
        return fail(
            summary,
            f"Nothing was changed. If {backup} exists and holds the state you expect, restore it "
            f"(`cp {backup} {state} && rm -f {journal}`); otherwise put a good copy in place with "
            f"`substratus state push FILE`.",
        )

    def journal_failure(self, exc: JournalCorrupt) -> DiagnosticError:
        state, backup, journal = self.state_path, self.backup_path, self.journal_path
        return fail(
            f"the state journal {journal} is corrupt at line {exc.line}: {exc.reason}",
            f"Nothing was changed. The journal records the writes made since {state} was last "
            f"rewritten. To return to the state before the last run, restore the backup "
            f"(`cp {backup} {state} && rm {journal}`); to return to the state in {state}, move "
            f"the journal aside (`mv {journal} {journal}.corrupt`). Then, if you have a newer "
            "good copy of the state, put it in place with `substratus state push FILE`.",
        )


def _replaced(path: Path, info: os.stat_result) -> bool:
    """Whether ``path`` is no longer the file ``info`` describes (a compaction renamed a new one
    in, or it was removed)."""
    try:
        now = os.stat(path)
    except OSError:
        return True
    return (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino)


def _file_id(info: os.stat_result) -> tuple[int, int]:
    return (info.st_dev, info.st_ino)
