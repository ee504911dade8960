"""Rebuilding a damaged state from its journal and a copy of the state it continues
(``substratus state recover``). Pure: bytes in, a ``StateFile`` out; the backends do the I/O.

- ``journal_chain(data)`` takes the writes of a local journal that belong together: those on top
  of the base its last write was made on, checked by ``journal.scan`` (same lineage, serials
  contiguous). Writes on top of yet other bases that are not provably stale: ``Unusable``.
- ``rebuild(entries, candidates)`` replays ``entries`` over each usable candidate and returns the
  newest result (on a tie, a copy the journal was written on exactly, ``Candidate.exact``, then
  the first given). A candidate is usable when it is a state of the journal's lineage at a serial
  ``c`` no older than the journal's first write minus one and, when ``c`` is within the journal,
  holds exactly the records the writes up to ``c`` left (so it is a state of the same history,
  not merely one with a high serial); the writes after ``c`` are replayed over it. A candidate
  newer than every write cannot be checked against them: it is taken as it is only when the user
  named it (``Candidate.named``); otherwise it makes the whole rebuild ``Unusable`` (an older
  result could undo its writes). When none is usable, ``Unusable`` says why for each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.statefile import STATE_FORMAT_VERSION, StateFile
from substratus.state.journal import SEAL, Position, decode_base, describe, replay, scan


class Unusable(Exception):
    """Nothing to rebuild from; the message says why."""


class Newer(Unusable):
    """A copy newer than every write of the journal that the user did not name."""


@dataclass(frozen=True)
class Candidate:
    """A copy of the state to replay the journal over; ``name`` is how messages call it."""

    name: str
    data: bytes
    exact: bool = False  # the journal's writes were made on top of exactly these bytes
    named: bool = False  # given by the user (``--from``): trusted even when newer than all


@dataclass(frozen=True)
class Chain:
    """The writes of a journal that belong together (``journal_chain``)."""

    base: str  # what their ``base`` field names
    entries: list[dict[str, Any]]
    end: int  # offset just after the last whole line
    bases: frozenset[str]  # every ``base`` any write in the journal names


@dataclass(frozen=True)
class Rebuilt:
    state: StateFile
    source: Candidate
    from_serial: int  # the candidate's serial
    replayed: list[int]  # the serials replayed over it


def journal_chain(data: bytes) -> Chain:
    """The chain of writes in a local journal; raises ``JournalCorrupt`` or ``Unusable``."""
    first: dict[str, Any] | None = None
    bases: set[str] = set()
    for raw in data.split(b"\n")[:-1]:
        try:
            entry = json.loads(raw)
        except ValueError:
            continue  # scan says whether that is a torn last line or corruption
        if isinstance(entry, dict) and isinstance(entry.get("base"), str) and SEAL not in entry:
            bases.add(entry["base"])
            if first is None or entry["base"] != first["base"]:
                first = entry
    if first is None:
        return Chain("", [], 0, frozenset())
    serial, version = first.get("serial"), first.get("version")
    at = Position(
        first["base"],
        str(first.get("lineage")),
        serial - 1 if type(serial) is int else -1,
        version if type(version) is int else STATE_FORMAT_VERSION,
    )
    found = scan(data, at)
    if found.foreign:
        raise Unusable(
            f"the journal also holds {describe(found.foreign)} made on top of other states"
        )
    return Chain(first["base"], found.entries, found.end, frozenset(bases))


def rebuild(entries: list[dict[str, Any]], candidates: list[Candidate]) -> Rebuilt:
    """``entries`` replayed over the best usable candidate (see the module docstring)."""
    reasons: list[str] = []
    usable: list[Rebuilt] = []
    newer = False
    for candidate in candidates:
        try:
            usable.append(_over(candidate, entries))
        except (Unusable, DiagnosticError) as exc:
            reasons.append(f"{candidate.name}: {exc}")
            newer = newer or isinstance(exc, Newer)
        except ValueError as exc:  # pydantic.ValidationError
            reasons.append(f"{candidate.name}: the rebuilt state is malformed: {exc}")
    if newer or not usable:  # (a newer copy makes any older result doubtful: let the user say)
        raise Unusable("; ".join(reasons) or "there is no copy of the state to start from")
    return max(usable, key=lambda r: (r.state.serial, r.source.exact))


def _over(candidate: Candidate, entries: list[dict[str, Any]]) -> Rebuilt:
    doc = decode_base(candidate.data, "it", Unusable)
    later = _continued(doc, entries, candidate.named)
    serial = doc["serial"]
    replay(doc, later)
    doc["resources"] = dict(sorted(doc["resources"].items()))
    state = StateFile.model_validate(doc)
    return Rebuilt(state, candidate, serial, [e["serial"] for e in later])


def _continued(
    doc: dict[str, Any], entries: list[dict[str, Any]], named: bool
) -> list[dict[str, Any]]:
    """The entries ``doc`` does not hold yet; ``Unusable`` when it is not a state they continue."""
    if not entries:
        return []
    first, lineage, serial = entries[0]["serial"], entries[0]["lineage"], doc["serial"]
    if doc["lineage"] != lineage:
        raise Unusable(f"it is another state (lineage {doc['lineage']}; the journal's: {lineage})")
    if serial < first - 1:
        raise Unusable(
            f"it is at serial {serial} and the journal starts at serial {first}, so the writes "
            f"of serials {serial + 1}–{first - 1} are in neither"
        )
    if serial > entries[-1]["serial"] and not named:
        raise Newer(
            f"it is at serial {serial}, newer than every write of the journal (serials "
            f"{first}–{entries[-1]['serial']}), and nothing shows it holds them; if it does, "
            "name it with --from"
        )
    if serial > entries[-1]["serial"]:
        return []  # named by the user: taken as it is
    left: dict[str, Any] = {}  # address → the record the writes up to ``serial`` left (or None)
    for entry in entries:
        if entry["serial"] <= serial:
            left.update(entry["set"])
            left.update(dict.fromkeys(entry["remove"]))
    for address, record in sorted(left.items()):
        if doc["resources"].get(address) != record:
            raise Unusable(
                f"it is at serial {serial} but does not hold the journal's record of {address} "
                "up to that serial (it is a copy of another history)"
            )
    return [entry for entry in entries if entry["serial"] > serial]
