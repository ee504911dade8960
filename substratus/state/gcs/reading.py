"""Reading one workspace's state out of a listing of its objects (``store.StateStore.read``).

``load(bucket, names, objects, last)`` takes one listing of the workspace's objects (the base
``W.json`` and every ``W.journal/…`` object) and returns the state as of that listing with its
token, or ``None`` when there is no base. The base is downloaded with ``if_generation_match`` of
its listed generation, then each journal entry of that generation in serial order, each with its
own listed generation; entries of older generations are returned as ``stale`` (left over by an
interrupted clean-up) and never applied.

- ``Moved``: the objects changed under the reader (a 404 or 412 on a download, or a gap in the
  serials, which a compaction's clean-up leaves for a moment): the caller lists again. On the
  ``last`` attempt these are ``DiagnosticError``s instead.
- A seal (``SEAL``) ends a journal: entries after it are corrupt; the token is ``:sealed``.
- Entries are checked by ``journal.scan`` (one whole line each, same lineage, serial exactly one
  more than the previous). The base and the replayed document are checked as the local backend
  checks them. Every failure is a ``DiagnosticError`` naming the object and how to recover.
"""

from __future__ import annotations

from typing import Any

from substratus.engine.diagnostic import DiagnosticError, fail
from substratus.engine.statefile import STATE_FORMAT_VERSION, StateFile
from substratus.state.gcs.client import Bucket, Missing, ObjectInfo, Precondition
from substratus.state.gcs.layout import Names, Token
from substratus.state.journal import JournalCorrupt, Position, decode_base, replay, scan

SEAL = b'{"sealed":true}\n'

Loaded = tuple[StateFile, Token, int, int, list[str]]  # state, token, entries, bytes, stale


class Moved(Exception):
    """The stored state changed while it was being read: list and read again."""


def load(bucket: Bucket, names: Names, objects: list[ObjectInfo], *, last: bool) -> Loaded | None:
    uri = names.location.uri(names.state)
    base = next((o for o in objects if o.name == names.state), None)
    if base is None:
        return None
    journal: dict[int, ObjectInfo] = {}
    stale: list[str] = []
    for obj in objects:
        parsed = names.parse_entry(obj.name)
        if parsed is not None and parsed[0] == base.generation:
            journal[parsed[1]] = obj
        elif parsed is not None and parsed[0] < base.generation:
            stale.append(obj.name)
    try:
        data, _ = bucket.download(names.state, if_generation_match=base.generation)
    except (Missing, Precondition):
        if last:
            raise fail(
                f"could not read the state {uri}: it kept changing while it was being read",
                "Another run is writing it right now. Wait for it to finish (plan and apply "
                "take the state lock by default) and run the command again.",
            ) from None
        raise Moved from None
    doc = base_doc(data, uri)
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
        try:
            raw, _ = bucket.download(obj.name, if_generation_match=obj.generation)
        except (Missing, Precondition):
            if last:
                raise journal_failure(names, obj, "it changed while being read") from None
            raise Moved from None
        if raw == SEAL:
            sealed = True
            continue
        try:
            found = scan(raw, at)
        except JournalCorrupt as exc:
            raise journal_failure(names, obj, exc.reason) from None
        if len(found.entries) != 1 or found.end != len(raw):
            raise journal_failure(names, obj, "it is not one journal entry of this state")
        at = found.at
        entries.append(found.entries[0])
        size += len(raw)
    replay(doc, entries)
    state = validate(doc, bool(entries), uri)
    return state, Token(base.generation, at.serial, sealed), len(entries), size, stale


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
