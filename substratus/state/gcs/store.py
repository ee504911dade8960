"""One workspace's state in GCS: a base object plus a journal, read and written with CAS.

Objects (``layout.Names``): the base ``W.json`` (``StateFile.to_json()``) and the journal
``W.journal/<G>/<serial:012d>.json``, ``G`` being the base's generation. A journal entry is one
``journal.encode_line`` line (``base`` = ``str(G)``) recording the changed records of one write; a
*seal* (``reading.SEAL``) ends a journal for good. The state is the base with the entries of
its own generation replayed in serial order (``journal.scan``/``replay``: same lineage, serials
contiguous from the base's). Token: ``layout.Token``, ``G:<serial>`` (``:sealed``).

- ``read()`` lists the workspace's objects once, downloads the base with ``if_generation_match``
  of the listed generation, then each entry of that generation the same way. A 404/412 or a gap
  on the way means a writer compacted meanwhile: read again (up to ``READ_ATTEMPTS``). So a read
  returns the state as of its listing, never a mix. Journals of other bases are ignored (and
  deleted by the next compaction) when provably in the base, else refused (``reading``).
- ``write(state, expected, changed)`` is compare-and-swap, enforced by GCS preconditions and never
  by a read first. Incremental write (``changed`` non-empty, ``serial`` = stored + 1, same
  lineage, the journal small: entries < ``max(MIN_ENTRIES, records)`` and bytes <=
  ``max(MIN_JOURNAL_BYTES, base size)``): create entry ``serial`` with ``if_generation_match=0``
  (two writers holding the same token aim at the same name: the second gets 412), then check the
  base is still ``G`` (a compaction meanwhile deleted the old journal, so a writer with an old
  token could otherwise fill a freed slot of a journal nobody reads). Otherwise a compaction:
  create the seal in that same slot (``if_generation_match=0``; a sealed token skips this), then
  upload the whole state with ``if_generation_match=G`` (``0`` when there is no base), then
  delete the old journal objects best-effort, the seal last (``remove``), so what an
  interrupted clean-up leaves is still sealed. The seal is what makes compaction safe: nobody can
  append to a journal whose base is about to be replaced. Any 412: ``StateConflict``, nothing
  (lasting) written. Bytes uploaded over an apply of N resources are O(N): entries are the size
  of a change and the journal only grows to the size of the base between compactions.
- Crash safety: each step is one atomic object write; a crash leaves the state before or after
  the write in progress. After a crash between seal and upload the journal stays sealed and the
  next write compacts directly (the base upload is then the compare-and-swap).
- ``recover(source)`` rebuilds a damaged state (``gcs.recovery``); ``install`` uploads a base
  with a generation precondition for it.
- ``fold()`` (called before the lock is released) compacts what this store journaled, so the
  next reader downloads one object. For that it keeps a private copy of the stored state
  (``Known.mirror``), taken at its first append of a run and then updated with the changed
  records only (so ``changed`` must name every address that differs, as the Walker does).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import uuid
from dataclasses import dataclass, field

from substratus.engine.backend import StateConflict
from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.statefile import StateFile
from substratus.state.gcs.client import Bucket, Missing, ObjectInfo, Precondition
from substratus.state.gcs.layout import Names, Token
from substratus.state.gcs.reading import SEAL, Moved, load
from substratus.state.gcs.recovery import recover
from substratus.state.journal import appendable, encode_line

MIN_JOURNAL_BYTES = 64 * 1024
MIN_ENTRIES = 200
READ_ATTEMPTS = 6
log = logging.getLogger("substratus.state.gcs")


@dataclass
class Known:
    """The stored version as this store last read or wrote it."""

    token: Token
    lineage: str
    version: int
    base_serial: int
    base_size: int
    entries: int
    journal_bytes: int
    addresses: set[str]
    mirror: StateFile | None  # a private copy of the stored state, from the first append on
    stale: list[str] = field(default_factory=list)  # journal objects of older bases


class StateStore:
    def __init__(self, bucket: Bucket, names: Names) -> None:
        self.bucket = bucket
        self.names = names
        self.uri = names.location.uri(names.state)
        self._writer = uuid.uuid4().hex
        self._count = itertools.count(1)
        self._known: Known | None = None

    def read(self) -> tuple[StateFile | None, str | None]:
        for attempt in range(1, READ_ATTEMPTS + 1):
            objects, _ = self.bucket.list_objects(self.names.listing_prefix)
            try:
                loaded = load(self.bucket, self.names, objects, last=attempt == READ_ATTEMPTS)
            except Moved:
                continue
            if loaded is None:
                self._known = None
                return None, None
            state, token, entries, journal_bytes, stale = loaded
            self._known = Known(
                token,
                lineage=state.lineage,
                version=state.version,
                base_serial=state.serial - entries,
                base_size=_size(objects, self.names.state),
                entries=entries,
                journal_bytes=journal_bytes,
                addresses=set(state.resources),
                mirror=None,
                stale=stale,
            )
            return state, str(token)
        raise AssertionError("unreachable: the last attempt raises")

    def write(self, state: StateFile, expected: str | None, changed: list[str]) -> str:
        token = None if expected is None else Token.parse(expected)
        if expected is not None and token is None:
            raise StateConflict(f"{expected!r} is not a version of {self.uri}; nothing written")
        unique = list(dict.fromkeys(changed))
        entry = None if token is None else self._entry(state, token, unique)
        known, self._known = self._known, None
        try:
            if token is not None and entry is not None and known is not None:
                self._known = self._append(state, token, entry, unique, known)
            else:
                self._known = self._compact(state, token, known)
        except Precondition:
            raise StateConflict(self._conflict(expected)) from None
        return str(self._known.token)

    def recover(self, source: tuple[str, bytes] | None) -> str:
        """``state recover`` (``gcs.recovery``)."""
        self._known = None
        try:
            return recover(self, source)
        finally:
            self._known = None

    def install(self, state: StateFile, if_generation_match: int) -> None:
        """Upload ``state`` as the base (``Precondition`` unless the base is that generation)."""
        self._known = None
        self.create(self.names.state, state.to_json().encode(), if_generation_match)

    def journaled(self) -> bool:
        """Whether this store appended journal entries since the last compaction."""
        known = self._known
        return known is not None and known.mirror is not None and known.entries > 0

    def fold(self) -> bool:
        """Compact the journal this store wrote (best-effort); whether it did."""
        known = self._known
        if known is None or known.mirror is None or not known.entries or known.token.sealed:
            return False
        try:
            self.write(known.mirror.model_copy(deep=True), str(known.token), [])
        except (StateConflict, DiagnosticError) as exc:
            log.debug("did not fold the journal of %s: %s", self.uri, exc)
            return False
        return True

    def delete(self, expected: str | None) -> None:
        """Remove the state and its journal (workspace delete); ``StateConflict`` if it changed."""
        token = None if expected is None else Token.parse(expected)
        try:
            if token is not None:
                if not token.sealed:
                    self.create(self.names.entry(token.generation, token.serial + 1), SEAL, 0)
                self.bucket.delete(self.names.state, if_generation_match=token.generation)
        except (Precondition, Missing):
            raise StateConflict(self._conflict(expected)) from None
        self._known = None
        objects, _ = self.bucket.list_objects(self.names.journal_root)
        self.remove([o.name for o in objects])

    # -- writing ------------------------------------------------------------------------------

    def _entry(self, state: StateFile, token: Token, changed: list[str]) -> bytes | None:
        """The journal entry for this write, or ``None`` to compact."""
        known = self._known
        if not changed or token.sealed or known is None or known.token != token:
            return None
        stored = (known.lineage, known.version, token.serial)
        if not appendable(state, stored, known.addresses, changed):
            return None
        if known.entries + 1 > max(MIN_ENTRIES, len(state.resources)):
            return None
        entry = encode_line(str(token.generation), state, changed)
        if known.journal_bytes + len(entry) > max(MIN_JOURNAL_BYTES, known.base_size):
            return None
        return entry

    def _append(
        self, state: StateFile, token: Token, entry: bytes, changed: list[str], known: Known
    ) -> Known:
        name = self.names.entry(token.generation, token.serial + 1)
        self.create(name, entry, 0)
        base = self.bucket.stat(self.names.state)
        if base is None or base.generation != token.generation:
            # A compaction replaced the base and cleared its journal meanwhile, so this slot was
            # free again: the entry is an orphan no reader will apply (or already folded in).
            self.remove([name])
            raise Precondition(name, False)
        if known.mirror is None:  # once per run: the state as written, i.e. as now stored
            known.mirror = state.model_copy(deep=True)
        mirror = known.mirror
        for address in changed:
            record = state.resources.get(address)
            if record is None:
                mirror.resources.pop(address, None)
                known.addresses.discard(address)
            else:
                mirror.resources[address] = record.model_copy(deep=True)
                known.addresses.add(address)
        mirror.serial, mirror.substratus_version = state.serial, state.substratus_version
        known.token = Token(token.generation, state.serial)
        known.entries += 1
        known.journal_bytes += len(entry)
        return known

    def _compact(self, state: StateFile, token: Token | None, known: Known | None) -> Known:
        data = state.to_json().encode()
        if token is not None and not token.sealed:  # nobody may append to this journal now
            self.create(self.names.entry(token.generation, token.serial + 1), SEAL, 0)
        info = self.create(self.names.state, data, token.generation if token else 0)
        if token is not None:
            self._cleanup(token, known)
        return Known(
            Token(info.generation, state.serial),
            base_serial=state.serial,
            base_size=len(data),
            entries=0,
            journal_bytes=0,
            addresses=set(state.resources),
            lineage=state.lineage,
            version=state.version,
            mirror=None,
        )

    def create(self, name: str, data: bytes, if_generation_match: int) -> ObjectInfo:
        nonce = f"{self._writer}-{next(self._count)}"
        return self.bucket.create(
            name, data, if_generation_match=if_generation_match, metadata={"writer": nonce}
        )

    def _cleanup(self, token: Token, known: Known | None) -> None:
        """Delete the journal of the replaced base ``token.generation`` and older leftovers."""
        try:
            if known is not None and known.token == token:
                names = known.stale + [
                    self.names.entry(token.generation, serial)
                    for serial in range(known.base_serial + 1, token.serial + 2)
                ]
            else:
                objects, _ = self.bucket.list_objects(self.names.journal(token.generation))
                names = [o.name for o in objects]
        except DiagnosticError as exc:
            log.debug("left old journal objects of %s behind: %s", self.uri, exc)
            return
        self.remove(names)

    def remove(self, names: list[str]) -> None:
        """Delete ``names`` in order, best-effort. Callers list a journal's seal last, so what
        an interrupted clean-up leaves is still sealed, which readers ignore."""
        for name in names:
            with contextlib.suppress(Missing, Precondition, DiagnosticError):
                self.bucket.delete(name)

    def _conflict(self, expected: str | None) -> str:
        return (
            f"the state {self.uri} was changed by another writer since it was read (read "
            f"version {expected or 'none: no state yet'}); nothing was written. Run the "
            "command again to work from the current state."
        )


def _size(objects: list[ObjectInfo], name: str) -> int:
    return next((o.size for o in objects if o.name == name), 0)
