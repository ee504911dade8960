"""``journal.scan``'s rule for lines that are not on top of the base: folded, stale only when a
seal proves them in the base, otherwise foreign (the state is damaged). Pure: bytes in."""

from __future__ import annotations

import pytest

from substratus.engine.statefile import StateFile
from substratus.state.journal import (
    JournalCorrupt,
    Position,
    describe,
    encode_line,
    encode_seal,
    scan,
)
from tests.state.journal_workload import LINEAGE, record

BASE, OLD, OTHER = "b" * 64, "0" * 64, "9" * 64


def line(base: str, serial: int, lineage: str = LINEAGE) -> bytes:
    """A write of ``model.s<serial>`` at ``serial`` on top of ``base``."""
    state = StateFile(lineage=lineage, serial=serial)
    state.resources[f"model.s{serial}"] = record(f"s{serial}")
    return encode_line(base, state, [f"model.s{serial}"])


def at(serial: int = 3, base: str = BASE) -> Position:
    return Position(base, LINEAGE, serial, 1)


def test_writes_on_top_of_the_base_are_folded() -> None:
    found = scan(line(BASE, 4) + line(BASE, 5), at())
    assert [e["serial"] for e in found.entries] == [4, 5]
    assert (found.stale, found.foreign, found.sealed) == (0, [], False)


@pytest.mark.parametrize(
    "serials",
    [[4, 5], [2, 3], [1]],  # ahead of the base, or not: a serial is no proof either way
    ids=["ahead", "within", "older"],
)
def test_writes_on_top_of_another_base_without_a_seal_are_foreign(serials: list[int]) -> None:
    found = scan(b"".join(line(OLD, s) for s in serials), at())
    assert found.entries == [] and found.stale == 0
    assert [(f.line, f.base, f.serial) for f in found.foreign] == [
        (n, OLD, s) for n, s in enumerate(serials, 1)
    ]


def test_a_seal_naming_this_base_proves_the_writes_before_it_stale() -> None:
    found = scan(line(OLD, 2) + line(OLD, 3) + encode_seal(OLD, BASE), at())
    assert (found.entries, found.foreign, found.stale, found.sealed) == ([], [], 3, False)


def test_a_seal_naming_another_base_proves_nothing() -> None:
    found = scan(line(OLD, 2) + encode_seal(OLD, OTHER), at())
    assert [f.serial for f in found.foreign] == [2]


def test_a_seal_proves_only_the_writes_before_it() -> None:
    found = scan(line(OLD, 2) + encode_seal(OLD, BASE) + line(OLD, 3), at())
    assert [f.serial for f in found.foreign] == [3]


def test_a_seal_proves_only_writes_of_its_own_base() -> None:
    found = scan(line(OTHER, 2) + encode_seal(OLD, BASE), at())
    assert [f.base for f in found.foreign] == [OTHER]


def test_a_later_seal_of_a_retried_compaction_proves_them() -> None:
    data = line(OLD, 2) + encode_seal(OLD, OTHER) + encode_seal(OLD, BASE)
    found = scan(data, at())
    assert found.foreign == [] and found.stale == 3


def test_a_deletion_seal_proves_them_against_any_base_or_none() -> None:
    data = line(OLD, 2) + encode_seal(OLD, None)
    assert scan(data, at()).foreign == []
    assert scan(data, Position("", "", 0, 1)).foreign == []
    assert [f.serial for f in scan(line(OLD, 2), Position("", "", 0, 1)).foreign] == [2]


def test_a_seal_of_this_base_marks_the_journal_sealed_and_keeps_its_writes() -> None:
    found = scan(line(BASE, 4) + encode_seal(BASE, OTHER), at())
    assert [e["serial"] for e in found.entries] == [4]
    assert (
        found.sealed
        and found.foreign == []
        and found.at.token == scan(line(BASE, 4), at()).at.token
    )


def test_a_torn_tail_after_foreign_writes_is_still_ignored() -> None:
    data = line(OLD, 2) + b'{"base": "' + OLD.encode()
    found = scan(data, at())
    assert [f.serial for f in found.foreign] == [2] and found.end == len(line(OLD, 2))


def test_a_malformed_seal_is_corrupt() -> None:
    with pytest.raises(JournalCorrupt, match="sealed"):
        scan(b'{"base":"' + OLD.encode() + b'","sealed":7}\n' + line(BASE, 4), at())


def test_describe_counts_and_spans_the_writes() -> None:
    foreign = scan(line(OLD, 2) + line(OLD, 3) + line(OLD, 4), at()).foreign
    assert describe(foreign) == "3 writes after serial 1 (serials 2–4)"
    assert describe(foreign[:1]) == "1 write after serial 1 (serial 2)"
