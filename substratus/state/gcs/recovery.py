"""``substratus state recover`` for the GCS backend: rebuild a damaged state from its journal.

``recover(store, source)`` (the CLI holds the state lock):

1. reads the state as every command does (``StateStore.read``): when that works, nothing is
   damaged and nothing is written;
2. finds the journal that does not belong to the base (``reading.foreign``; one only, else it
   refuses), downloads its entries in serial order (checked by ``journal.scan``) and replays them
   over ``source`` (``--from FILE``) or else the state object there now (``rebuild.rebuild``: it
   must be a state of the journal's lineage the journal continues);
3. keeps the replaced object as ``W.json.damaged``, uploads the rebuilt state as the next serial
   with ``if_generation_match`` of the generation it read (a concurrent change: nothing written,
   run again), then deletes the journal best-effort (an entry no newer than the new base is
   stale anyway).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from substratus.engine.diagnostic import DiagnosticError, fail
from substratus.engine.statefile import STATE_FORMAT_VERSION, StateFile
from substratus.state.gcs.client import Bucket, Missing, ObjectInfo, Precondition
from substratus.state.gcs.layout import Names
from substratus.state.gcs.reading import foreign, group, journal_failure
from substratus.state.journal import JournalCorrupt, Position, decode_base, scan
from substratus.state.rebuild import Candidate, Rebuilt, Unusable, rebuild


class StateStore(Protocol):
    """What recovery needs of ``gcs.store.StateStore`` (a protocol: the store calls ``recover``,
    so importing it here would make the two modules import each other)."""

    bucket: Bucket
    names: Names
    uri: str

    def read(self) -> tuple[StateFile | None, str | None]: ...

    def install(self, state: StateFile, if_generation_match: int) -> None: ...

    def create(self, name: str, data: bytes, if_generation_match: int) -> ObjectInfo: ...

    def remove(self, names: list[str]) -> None: ...


def recover(store: StateStore, source: tuple[str, bytes] | None) -> str:
    """Rebuild the state of ``store`` (see the module docstring); what was done, for the user."""
    try:
        state, _ = store.read()
    except DiagnosticError as exc:
        problem = exc
    else:
        found = "no state" if state is None else f"serial {state.serial}"
        return f"The state {store.uri} reads correctly ({found}); nothing to recover."
    objects, _ = store.bucket.list_objects(store.names.listing_prefix)
    base = next((o for o in objects if o.name == store.names.state), None)
    try:
        data = None if base is None else _download(store, base)
        journal, others = group(store.names, objects, base.generation if base else None)
        bad = foreign(store.bucket, store.names, others, _decode(data), last=True)
        if len(bad) != 1 or journal:
            raise _refused(store.uri, _why_not(problem, bad, bool(journal)))
        leftovers = others[bad[0][0]]
        entries = _entries(store, leftovers)
        candidates = [Candidate(f"the file {source[0]}", source[1], named=True)] if source else []
        if not source and data is not None:
            candidates.append(Candidate(f"the state object {store.uri}", data))
        try:
            rebuilt = rebuild(entries, candidates)
        except Unusable as exc:
            raise _refused(store.uri, str(exc)) from None
        rebuilt.state.serial += 1  # a new write: no token read before it matches any more
        if base is not None and data is not None:
            _keep(store, data)
        store.install(rebuilt.state, base.generation if base else 0)
    except (Missing, Precondition):
        raise fail(
            f"the state {store.uri} changed while it was being recovered; nothing was replaced",
            "Another run is writing it. Wait for it to finish and run the command again.",
        ) from None
    store.remove([o.name for o in leftovers])
    return _report(store.uri, rebuilt, kept=base is not None)


def _download(store: StateStore, obj: ObjectInfo) -> bytes:
    return store.bucket.download(obj.name, if_generation_match=obj.generation)[0]


def _report(uri: str, rebuilt: Rebuilt, *, kept: bool) -> str:
    serials = rebuilt.replayed
    replayed = ""
    if serials:
        span = f"{serials[0]}–{serials[-1]}" if len(serials) > 1 else str(serials[0])
        replayed = f" and {len(serials)} write(s) of its journal (serials {span})"
    lines = [
        f"Rebuilt the state {uri} from {rebuilt.source.name} (serial {rebuilt.from_serial})"
        f"{replayed}: now serial {rebuilt.state.serial}, "
        f"{len(rebuilt.state.resources)} resource(s).",
    ]
    if kept:
        lines.append(f"The replaced state object was kept as {uri}.damaged.")
    lines.append("Check it with `substratus state list` and `substratus plan`.")
    return "\n".join(lines)


def _decode(data: bytes | None) -> dict[str, Any] | None:
    """The decoded base, ``None`` when there is none or it does not read."""
    try:
        return None if data is None else decode_base(data, "it", Unusable)
    except (Unusable, DiagnosticError):
        return None


def _entries(store: StateStore, objs: list[ObjectInfo]) -> list[dict[str, Any]]:
    """The journal entries in ``objs`` (one generation, serial order), checked as a chain."""
    entries: list[dict[str, Any]] = []
    at: Position | None = None
    for obj in objs:
        raw = _download(store, obj)
        try:
            at = at or _start(raw)
            found = scan(raw, at)
        except JournalCorrupt as exc:
            raise journal_failure(store.names, obj, exc.reason) from None
        if len(found.entries) != 1 or found.end != len(raw):
            raise journal_failure(store.names, obj, "it is not one journal entry of this state")
        at = found.at
        entries.append(found.entries[0])
    return entries


def _start(raw: bytes) -> Position:
    """Where a chain starting with the entry ``raw`` starts (``scan`` checks the rest)."""
    try:
        entry = json.loads(raw)
    except ValueError:
        raise JournalCorrupt(1, "not valid JSON") from None
    if not isinstance(entry, dict) or type(entry.get("serial")) is not int:
        raise JournalCorrupt(1, "not a journal entry")
    version = entry.get("version")
    return Position(
        str(entry.get("base")),
        str(entry.get("lineage")),
        entry["serial"] - 1,
        version if type(version) is int else STATE_FORMAT_VERSION,
    )


def _keep(store: StateStore, data: bytes) -> None:
    """Keep the replaced base as ``W.json.damaged`` (replacing an older one)."""
    name = f"{store.names.state}.damaged"
    held = store.bucket.stat(name)
    store.create(name, data, held.generation if held else 0)


def _why_not(problem: DiagnosticError, bad: list[tuple[int, Any]], journaled: bool) -> str:
    if journaled and bad:
        return "the state has a journal of its own as well as the one that does not belong to it"
    if len(bad) > 1:
        return f"{len(bad)} journals do not belong to the state; recover can replay only one"
    reading = "; ".join(d.summary for d in problem.diagnostics)
    return (
        f"what keeps it from being read is not a journal that does not belong to it "
        f"({reading}); follow the advice of that error instead"
    )


def _refused(uri: str, reason: str) -> DiagnosticError:
    return fail(
        f"cannot rebuild the state {uri} from its journal",
        f"{reason}. Nothing was changed. Pass a copy of the state that the journal continues "
        "with --from FILE (for example an earlier `substratus state pull` output).",
    )
