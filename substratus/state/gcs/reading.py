"""Reading one workspace's state out of a listing of its objects (``store.StateStore.read``).

``load(bucket, names, objects, last)`` takes one listing of the workspace's objects (the base
``W.json`` and every ``W.journal/…`` object) and returns the state as of that listing with its
token, or ``None`` when there is no base. The base is downloaded with ``if_generation_match`` of
its listed generation, then each journal entry of that generation in serial order, each with its
own listed generation.

- Journals of other generations (``leftovers``) are never applied, and ignored (returned as
  ``stale``, for the next compaction to delete) only when they are provably in the base: their
  last object is a seal (a compaction claimed them: its base upload was a compare-and-swap on
  their generation, made from a state that held them), or it is an entry of the base's lineage
  whose serial is at most the base's (a base written after it; e.g. an entry orphaned by a writer
  that lost a race). Anything else means the base was edited, damaged, replaced by another copy
  or removed after they were written: a ``DiagnosticError`` (``damage``) naming the base, the
  journal and ``substratus state recover``. Without a base, only sealed journals are ignored
  (a workspace delete seals before it removes the base).
- ``Moved``: the objects changed under the reader (a 404 or 412 on a download, or a gap in the
  serials, which a compaction's clean-up leaves for a moment): the caller lists again. On the
  ``last`` attempt these are ``DiagnosticError``s instead.
- A seal (``SEAL``) ends a journal: entries after it are corrupt; the token is ``:sealed``.
- Entries are checked by ``journal.scan`` (one whole line each, same lineage, serial exactly one
  more than the previous). The base and the replayed document are checked as the local backend
  checks them. Every failure is a ``DiagnosticError`` naming the object and how to recover.
"""

from __future__ import annotations

import json
from typing import Any

from substratus.engine.diagnostic import DiagnosticError, fail
from substratus.engine.statefile import STATE_FORMAT_VERSION, StateFile
from substratus.state.damage import (
    damaged_base,
    kept_changing,
    mismatch,
    no_base,
    recover_command,
)
from substratus.state.gcs.client import Bucket, Missing, ObjectInfo, Precondition
from substratus.state.gcs.layout import Names, Token
from substratus.state.journal import (
    Foreign,
    JournalCorrupt,
    Position,
    decode_base,
    describe,
    replay,
    scan,
)

SEAL = b'{"sealed":true}\n'

Loaded = tuple[StateFile, Token, int, int, list[str]]  # state, token, entries, bytes, stale


class Moved(Exception):
    """The stored state changed while it was being read: list and read again."""


def load(bucket: Bucket, names: Names, objects: list[ObjectInfo], *, last: bool) -> Loaded | None:
    uri = names.location.uri(names.state)
    base = next((o for o in objects if o.name == names.state), None)
    journal, others = group(names, objects, base.generation if base else None)
    if base is None:
        _refuse_leftovers(bucket, names, others, None, last=last)
        return None
    data = _download(bucket, names.state, base.generation, last=last, uri=uri)
    try:
        doc = base_doc(data, uri)
    except DiagnosticError as exc:
        _refuse_leftovers(bucket, names, others, None, last=last, corrupt=exc)
        raise
    stale = _refuse_leftovers(bucket, names, others, doc, last=last)
    at = Position(str(base.generation), doc["lineage"], doc["serial"], doc["version"])
    entries: list[dict[str, Any]] = []
    size = 0
    sealed = False
    for serial in sorted(journal):
        obj = journal[serial]
        if sealed or serial != at.serial + 1:
            if last:
                raise journal_failure(
                    names,
                    obj,
                    f"serial {serial} does not follow serial {at.serial}"
                    + (" and its seal" if sealed else ""),
                )
            raise Moved
        raw = _download(bucket, obj.name, obj.generation, last=last, uri=uri, entry=(names, obj))
        if raw == SEAL:
            sealed = True
            continue
        at, entry = _entry(raw, at, names, obj)
        entries.append(entry)
        size += len(raw)
    replay(doc, entries)
    state = validate(doc, bool(entries), uri)
    return state, Token(base.generation, at.serial, sealed), len(entries), size, stale


Leftovers = dict[int, list[ObjectInfo]]  # generation → its journal objects, in serial order


def group(
    names: Names, objects: list[ObjectInfo], generation: int | None
) -> tuple[dict[int, ObjectInfo], Leftovers]:
    """The journal of base ``generation`` (serial → object) and the journals of all others."""
    journal: dict[int, ObjectInfo] = {}
    others: Leftovers = {}
    for obj in sorted(objects, key=lambda o: o.name):
        parsed = names.parse_entry(obj.name)
        if parsed is not None and parsed[0] == generation:
            journal[parsed[1]] = obj
        elif parsed is not None:
            others.setdefault(parsed[0], []).append(obj)
    return journal, others


def foreign(
    bucket: Bucket, names: Names, others: Leftovers, doc: dict[str, Any] | None, *, last: bool
) -> list[tuple[int, list[Foreign]]]:
    """The journals in ``others`` that are not provably in the base ``doc`` (see the module
    docstring), newest last: generation and its writes."""
    found: list[tuple[int, list[Foreign]]] = []
    for generation, objs in sorted(others.items()):
        uri = names.location.uri(objs[-1].name)
        raw = _download(bucket, objs[-1].name, objs[-1].generation, last=last, uri=uri)
        if raw == SEAL or (doc is not None and _contained(raw, doc)):
            continue
        serials = [parsed[1] for o in objs if (parsed := names.parse_entry(o.name))]
        found.append((generation, [Foreign(0, str(generation), s) for s in serials]))
    return found


def _contained(raw: bytes, doc: dict[str, Any]) -> bool:
    """Whether the journal entry ``raw`` is of ``doc``'s lineage and no newer than it."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return False
    if not isinstance(entry, dict) or entry.get("lineage") != doc["lineage"]:
        return False
    serial = entry.get("serial")
    return type(serial) is int and serial <= doc["serial"]


def _refuse_leftovers(
    bucket: Bucket,
    names: Names,
    others: Leftovers,
    doc: dict[str, Any] | None,
    *,
    last: bool,
    corrupt: DiagnosticError | None = None,
) -> list[str]:
    """The names of the leftover objects that are provably stale; raises when any is not."""
    bad = foreign(bucket, names, others, doc, last=last)
    if not bad:
        return [o.name for objs in others.values() for o in objs]
    generation, writes = bad[-1]
    state, folder = names.location.uri(names.state), names.location.uri(names.journal(generation))
    command = recover_command(names.location.url, names.workspace)
    manual = manual_recovery(state, generation)
    if corrupt is not None:
        problem = "; ".join(d.summary for d in corrupt.diagnostics)
        raise damaged_base(state, folder, problem, describe(writes), command, manual)
    if doc is None:
        raise no_base(state, folder, describe(writes), command, manual)
    raise mismatch(state, folder, describe(writes), doc["serial"], command, manual)


def manual_recovery(state: str, generation: int) -> str:
    return (
        f"It replays the journal over the state object there now when that is a state the "
        f"journal continues, and keeps that object as {state}.damaged. To start from another "
        f"copy, pass it with --from FILE: an earlier `substratus state pull` output or, if the "
        f"bucket keeps old versions, the one the journal was written on (`gcloud storage cp "
        f"{state}#{generation} FILE`)."
    )


def _download(
    bucket: Bucket,
    name: str,
    generation: int,
    *,
    last: bool,
    uri: str,
    entry: tuple[Names, ObjectInfo] | None = None,
) -> bytes:
    """The object's bytes if it still is that generation; else ``Moved`` (``last``: a failure)."""
    try:
        data, _ = bucket.download(name, if_generation_match=generation)
    except (Missing, Precondition):
        if not last:
            raise Moved from None
        if entry is not None:
            raise journal_failure(entry[0], entry[1], "it changed while being read") from None
        raise kept_changing(uri) from None
    return data


def _entry(
    raw: bytes, at: Position, names: Names, obj: ObjectInfo
) -> tuple[Position, dict[str, Any]]:
    """The journal entry ``raw`` of ``obj``, and where the replay stands after it."""
    try:
        found = scan(raw, at)
    except JournalCorrupt as exc:
        raise journal_failure(names, obj, exc.reason) from None
    if len(found.entries) != 1 or found.end != len(raw):
        raise journal_failure(names, obj, "it is not one journal entry of this state")
    return found.at, found.entries[0]


def base_doc(data: bytes, uri: str) -> dict[str, Any]:
    """The decoded base object, with the fields a replay needs checked."""
    return decode_base(data, f"the state {uri}", lambda message: corrupt(uri, message))


def validate(doc: dict[str, Any], journaled: bool, uri: str) -> StateFile:
    what = f"the state {uri}" + (" with its journal" if journaled else "")
    if journaled:
        doc["resources"] = dict(sorted(doc["resources"].items()))
    if doc.get("version") != STATE_FORMAT_VERSION:
        raise fail(
            f"cannot read {what}: state format version {doc.get('version')!r} is not supported "
            f"(this substratus reads version {STATE_FORMAT_VERSION}); upgrade substratus"
        )
    try:
        return StateFile.model_validate(doc)
    except Exception as exc:  # pydantic.ValidationError
        raise corrupt(uri, f"{what} is corrupt: the state document is malformed: {exc}") from exc


def corrupt(uri: str, summary: str) -> DiagnosticError:
    return fail(
        summary,
        "Nothing was changed. If the bucket keeps old versions (Object Versioning), put a good "
        f"one back: `gcloud storage ls -a {uri}` lists them, `gcloud storage cp "
        f"{uri}#GENERATION {uri}` restores one. Otherwise replace the object with a good copy of "
        f"the state (`gcloud storage cp FILE {uri}`, e.g. a file from `substratus state pull`).",
    )


def journal_failure(names: Names, obj: ObjectInfo, reason: str) -> DiagnosticError:
    uri = names.location.uri(obj.name)
    state = names.location.uri(names.state)
    folder = uri.rsplit("/", 1)[0]
    return fail(
        f"the state journal object {uri} is corrupt: {reason}",
        f"Nothing was changed. Each object in {folder}/ records one write on top of {state}, in "
        "serial order. To return to the state before this write, delete this object and every "
        f"later one (`gcloud storage ls {folder}/` lists them, `gcloud storage rm` deletes), "
        "then check the result with `substratus state list`.",
    )
