"""The state journal's format: one JSON line per incremental write, replayed over the base file.

A workspace's state is its base file ``<ws>.json`` (``StateFile.to_json()``, unchanged) plus the
journal ``<ws>.journal`` beside it. Each line records one ``write``::

    {"base":"<sha256 hex of the base file's bytes>","lineage":"…","serial":8,"version":1,
     "substratus_version":"…","set":{"<address>":{<record as in the state file>}},
     "remove":["<address>"]}

``set`` holds the records of the changed addresses present in the state, ``remove`` the changed
addresses absent from it. Replaying a line puts those records in place, drops those addresses and
takes every top-level field other than ``resources`` from the line (``salt``, written only
by states that have one, when the line has it). A compaction that leaves
lines behind first appends a *seal*, ``{"base":"<sha256 of the base>","sealed":"<sha256 of the
new base>"}`` (``"sealed":null`` when the workspace is being deleted): the proof that those lines
are in the base it installs. No I/O here: ``scan`` reads bytes, ``replay`` edits a decoded base
document, ``encode_line`` and ``encode_seal`` build lines.

``scan`` rules (the same for a reader without the lock and for a writer under it):

- Lines end with ``\\n``. Bytes after the last ``\\n`` are a torn tail (a crash mid-append) and are
  ignored; so is a last line that is not valid JSON (garbage left by a crash). A line is never
  torn anywhere else: ``JournalCorrupt``.
- A write whose ``base`` is the base file's sha256 is *folded*: it must be a well-formed entry of
  the same lineage whose serial is exactly one more than the previous one's (the base's for the
  first); otherwise ``JournalCorrupt``.
- A write with another ``base`` is *stale* only when it is provably in the base already: a later
  seal of its base names the sha256 of this base file (the compaction that installed this base
  had it), or ``null`` (that base was deleted with its workspace). Nothing else proves it — not
  the lineage, not the serial (a copy of the state from elsewhere can have any serial).
- Any other write is *foreign* (``Scan.foreign``): the base was edited, damaged or replaced after
  it was written, so neither file alone is the state. Callers refuse to use the state then.
- A seal of this base (``Scan.sealed``) means a compaction began and stopped before installing
  its new base: the lines before it still apply, and the next write compacts instead of
  appending. Seals of other bases are stale.

The version token (``Position.token``) is the base sha256 alone while no line applies, else
``<base sha256>:<lines>:<chain>``, ``chain`` being sha256 chained over the bytes of every applied
line, so it identifies the base and the exact journal content, and changes on every write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from substratus.engine.diagnostic import fail
from substratus.engine.statefile import STATE_FORMAT_VERSION, StateFile

TOP_LEVEL = ("lineage", "serial", "version", "substratus_version")
SEAL = "sealed"


class JournalCorrupt(ValueError):
    """A journal line that is neither applicable, stale nor a torn tail (1-based ``line``)."""

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}")


@dataclass(frozen=True)
class Position:
    """Where a replay stands: the base, and the last line applied on top of it (if any)."""

    base: str  # sha256 hex of the base file's bytes ("" when there is no base)
    lineage: str
    serial: int
    version: int
    lines: int = 0  # lines applied
    seen: int = 0  # lines read, stale ones included (for line numbers in messages)
    chain: str = ""

    @property
    def token(self) -> str:
        return self.base if not self.lines else f"{self.base}:{self.lines}:{self.chain}"


@dataclass(frozen=True)
class Foreign:
    """A write that neither belongs to the base nor is provably in it (1-based ``line``)."""

    line: int
    base: str
    serial: int | None  # ``None`` when the line has no integer serial


@dataclass
class Scan:
    """What ``scan`` found in some journal bytes, from the position it started at."""

    at: Position
    entries: list[dict[str, Any]] = field(default_factory=list)
    end: int = 0  # offset just after the last whole line (applied or stale); a torn tail follows
    last: bytes = b""  # that line
    stale: int = 0  # lines of other bases that are provably in this one (writes and seals)
    sealed: bool = False  # a seal of this base: the next write compacts
    foreign: list[Foreign] = field(default_factory=list)


def scan(data: bytes, at: Position) -> Scan:
    """Parse and classify the lines in ``data``, continuing from ``at`` (see the module
    docstring); raises ``JournalCorrupt``. Foreign writes are returned, not raised."""
    found = Scan(at)
    pos = 0
    while (newline := data.find(b"\n", pos)) != -1:
        raw = data[pos : newline + 1]
        line_no = found.at.seen + 1
        try:
            entry = json.loads(raw)
        except ValueError:
            if newline + 1 == len(data):  # the last line: garbage left by a crash mid-append
                break
            raise JournalCorrupt(line_no, "not valid JSON") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("base"), str):
            raise JournalCorrupt(line_no, "not a journal entry (no `base`)")
        if SEAL in entry:
            _seal(entry, line_no, found)
        elif entry["base"] != found.at.base:
            serial = entry.get("serial")
            found.foreign.append(
                Foreign(line_no, entry["base"], serial if type(serial) is int else None)
            )
        else:
            _fold(entry, raw, line_no, found)
        found.at = replace(found.at, seen=line_no)
        found.last = raw
        pos = found.end = newline + 1
    return found


def _seal(entry: dict[str, Any], line_no: int, found: Scan) -> None:
    installed = entry[SEAL]
    if installed is not None and not isinstance(installed, str):
        raise JournalCorrupt(line_no, "`sealed` is neither a sha256 nor null")
    if entry["base"] == found.at.base:
        found.sealed = True
        return
    found.stale += 1
    if installed is None or installed == found.at.base:  # proves the writes of its base
        proven = [f for f in found.foreign if f.base == entry["base"]]
        found.foreign = [f for f in found.foreign if f.base != entry["base"]]
        found.stale += len(proven)


def _fold(entry: dict[str, Any], raw: bytes, line_no: int, found: Scan) -> None:
    problem = _problem(entry, found.at)
    if problem:
        raise JournalCorrupt(line_no, problem)
    chain = hashlib.sha256((found.at.chain or found.at.base).encode() + raw).hexdigest()
    found.at = replace(
        found.at,
        serial=entry["serial"],
        version=entry["version"],
        lines=found.at.lines + 1,
        chain=chain,
    )
    found.entries.append(entry)


def describe(foreign: list[Foreign]) -> str:
    """``"3 writes after serial 4 (serials 5–7)"`` for messages."""
    count = f"{len(foreign)} write{'s' if len(foreign) != 1 else ''}"
    serials = sorted(f.serial for f in foreign if f.serial is not None)
    if not serials:
        return count
    span = f"serial {serials[0]}" if len(serials) == 1 else f"serials {serials[0]}–{serials[-1]}"
    return f"{count} after serial {serials[0] - 1} ({span})"


def _problem(entry: dict[str, Any], at: Position) -> str:
    """Why ``entry`` cannot follow ``at`` (``""`` when it can)."""
    records, removed = entry.get("set"), entry.get("remove")
    if not isinstance(records, dict) or not all(isinstance(r, dict) for r in records.values()):
        return "`set` is not an object of resource records"
    if not isinstance(removed, list) or not all(isinstance(a, str) for a in removed):
        return "`remove` is not a list of addresses"
    if type(entry.get("version")) is not int:
        return "`version` is not an integer"
    if not isinstance(entry.get("substratus_version"), str):
        return "`substratus_version` is not a string"
    if not isinstance(entry.get("salt", ""), str):
        return "`salt` is not a string"
    if entry.get("lineage") != at.lineage:
        return f"lineage {entry.get('lineage')!r} differs from the state's {at.lineage!r}"
    serial = entry.get("serial")
    if type(serial) is not int:
        return "`serial` is not an integer"
    if serial != at.serial + 1:
        return f"serial {serial} does not follow serial {at.serial} (writes are missing)"
    return ""


def replay(doc: dict[str, Any], entries: Iterable[dict[str, Any]]) -> None:
    """Apply ``entries`` (from ``scan``) to the decoded base document ``doc``, in place."""
    resources: dict[str, Any] = doc["resources"]
    for entry in entries:
        resources.update(entry["set"])
        for address in entry["remove"]:
            resources.pop(address, None)
        for key in TOP_LEVEL:
            doc[key] = entry[key]
        if "salt" in entry:  # set once, by the write that first fingerprinted a secret
            doc["salt"] = entry["salt"]


def encode_line(base: str, state: StateFile, changed: Iterable[str]) -> bytes:
    """The journal line recording ``state``'s ``changed`` addresses against base ``base``."""
    records: list[str] = []
    removed: list[str] = []
    for address in changed:
        record = state.resources.get(address)
        if record is None:
            removed.append(address)
        else:
            records.append(f"{_dump(address)}:{record.model_dump_json(exclude_none=True)}")
    top = {key: getattr(state, key) for key in TOP_LEVEL}
    if state.salt is not None:  # lines of a state without one stay as they were
        top["salt"] = state.salt
    head = _dump({"base": base, **top})
    tail = f',"set":{{{",".join(records)}}},"remove":{_dump(removed)}}}\n'
    return (head[:-1] + tail).encode()


def encode_seal(base: str, installed: str | None) -> bytes:
    """The seal a compaction appends before it installs the base whose sha256 is ``installed``
    (``None``: the base is being deleted), proving the lines of ``base`` are in it."""
    return (_dump({"base": base, SEAL: installed}) + "\n").encode()


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def decode_base(data: bytes, what: str, corrupt: Callable[[str], Exception]) -> dict[str, Any]:
    """The decoded base state (``what`` names it in messages, e.g. "the state file X"), with the
    fields a replay needs checked; a newer format is "cannot read", anything else ``corrupt``."""
    doc: Any = None
    with contextlib.suppress(ValueError):
        doc = json.loads(data)
    if (
        isinstance(doc, dict)
        and doc.get("version") == STATE_FORMAT_VERSION
        and isinstance(doc.get("lineage"), str)
        and type(doc.get("serial")) is int
        and isinstance(doc.get("resources"), dict)
    ):
        return doc
    try:  # let the model say what is wrong, or fill in what a hand-made file left out
        state = StateFile.from_json(data)
    except ValueError as exc:
        version = doc.get("version") if isinstance(doc, dict) else None
        if isinstance(version, int) and version != STATE_FORMAT_VERSION:
            raise fail(f"cannot read {what}: {exc}") from None
        raise corrupt(f"{what} is corrupt: {exc}") from None
    return state.model_dump(mode="json", exclude_none=True)


def appendable(
    state: StateFile,
    stored: tuple[str, int, int],
    addresses: set[str] | frozenset[str],
    changed: list[str],
) -> bool:
    """Whether ``state`` can be stored as one journal entry on top of the stored state
    (``stored`` = its lineage, format version and serial; ``addresses`` its records): it is
    the next serial of the same lineage, and ``changed`` explains every added or removed
    record. Otherwise the writer compacts."""
    if not changed or (state.lineage, state.version, state.serial) != (
        stored[0],
        stored[1],
        stored[2] + 1,
    ):
        return False
    delta = 0
    for address in changed:
        now, before = address in state.resources, address in addresses
        if not now and not before:
            return False
        delta += int(now) - int(before)
    return len(state.resources) == len(addresses) + delta  # else an unlisted address changed
