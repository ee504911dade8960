"""The GCS state backend's state half against the emulator: round trip, journal, compaction,
compare-and-swap between writers, recovery from interrupted compactions, corrupt objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from substratus.engine.backend import StateConflict
from substratus.engine.diagnostic import DiagnosticError
from substratus.state import open_backend
from substratus.state.gcs import GcsBackend, parse_url
from substratus.state.gcs.layout import Token
from substratus.state.gcs.reading import SEAL
from substratus.state.journal import encode_line
from tests.state.gcs.conftest import MakeBackend
from tests.state.gcs.helpers import add, journal, objects, state_of, text
from tests.support.gcs import GcsServer


def put(server: GcsServer, backend: GcsBackend, name: str, data: bytes) -> None:
    """Write an object directly (around the backend), as a crash or another tool would."""
    bucket = server.direct_client().bucket(backend.location.bucket)
    bucket.blob(backend.location.object(name)).upload_from_string(data)


# -- no emulator needed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("gs://team-state", "team-state", ""),
        ("gs://team-state/", "team-state", ""),
        ("gs://team-state/a/b/", "team-state", "a/b"),
        ("gs://team_state.x//a//b", "team_state.x", "a/b"),
    ],
)
def test_urls(url: str, bucket: str, prefix: str) -> None:
    location = parse_url(url)
    assert (location.bucket, location.prefix) == (bucket, prefix)


@pytest.mark.parametrize("url", ["gs://", "gs:///p", "gs://UPPER/p", "gs://a/p", "gs://-x-/p"])
def test_bad_bucket_names(url: str) -> None:
    with pytest.raises(DiagnosticError, match="invalid bucket name"):
        parse_url(url)


def test_open_backend_routes_gs_urls(tmp_path: Path) -> None:
    backend = open_backend("gs://team-state/prod", "staging", tmp_path)
    assert isinstance(backend, GcsBackend)
    assert (backend.url, backend.workspace) == ("gs://team-state/prod", "staging")
    assert backend.names.state == "prod/staging.json"
    assert backend.names.entry(7, 12) == "prod/staging.journal/7/000000000012.json"


def test_tokens() -> None:
    assert Token.parse("12:5") == Token(12, 5)
    assert str(Token(12, 5, sealed=True)) == "12:5:sealed"
    assert Token.parse("12:5:sealed") == Token(12, 5, True)
    for bad in ("", "12", "a:5", "12:5:x", "12:5:sealed:1"):
        assert Token.parse(bad) is None


# -- against the emulator ----------------------------------------------------------------------


def test_round_trip(backend: GcsBackend, make_backend: MakeBackend) -> None:
    assert backend.read() == (None, None)
    state = state_of("a", "b")
    token = backend.write(state, None, [])
    got, got_token = make_backend().read()
    assert got == state and got_token == token
    assert got is not None and got.to_json() == state.to_json()


def test_each_write_is_one_small_journal_object(
    backend: GcsBackend, make_backend: MakeBackend, emulator: GcsServer
) -> None:
    state = state_of("a")
    token = backend.write(state, None, [])
    generation = objects(emulator, backend)["default.json"]
    emulator.proxy.reset_stats()
    for name in ("b", "c", "d"):
        token = backend.write(state, token, add(state, name))
    uploaded = emulator.proxy.stats()["bytes_uploaded"]
    assert uploaded < 3 * 2000  # three records, not three states
    assert journal(emulator, backend) == [
        f"default.journal/{generation}/{serial:012d}.json" for serial in (2, 3, 4)
    ]
    got, got_token = make_backend().read()
    assert got == state and got_token == token == f"{generation}:4"


def test_unlock_folds_the_journal_into_the_base(
    backend: GcsBackend, make_backend: MakeBackend, emulator: GcsServer
) -> None:
    from substratus.engine.backend import LockInfo

    lock_id = backend.lock(LockInfo(operation="apply"))
    state = state_of("a")
    token = backend.write(state, None, [])
    for name in ("b", "c"):
        token = backend.write(state, token, add(state, name))
    backend.unlock(lock_id)
    assert sorted(objects(emulator, backend)) == ["default.json"]
    got, got_token = make_backend().read()
    assert got == state and got_token is not None and got_token.endswith(":3")


def test_compacts_when_changed_is_empty_or_the_journal_outgrows_the_base(
    backend: GcsBackend, emulator: GcsServer
) -> None:
    state = state_of("a")
    token = backend.write(state, None, [])
    token = backend.write(state, token, add(state, "b"))
    assert len(journal(emulator, backend)) == 1
    add(state, "c")
    token = backend.write(state, token, [])  # unknown changes: the whole state
    assert journal(emulator, backend) == []
    for n in range(12):  # 12 x 10 KB entries > max(64 KiB, base): compacted on the way
        token = backend.write(state, token, add(state, f"big{n}", size=10_000))
    assert len(journal(emulator, backend)) < 12
    assert backend.read()[0] == state


def test_a_write_that_lost_the_race_changes_nothing(make_backend: MakeBackend) -> None:
    first, second = make_backend(), make_backend()
    state = state_of("a")
    first.write(state, None, [])
    mine, my_token = first.read()
    theirs, their_token = second.read()
    assert mine is not None and theirs is not None
    their_token = second.write(theirs, their_token, add(theirs, "theirs"))
    with pytest.raises(StateConflict, match="changed by another writer"):
        first.write(mine, my_token, add(mine, "mine"))  # same slot: 412
    with pytest.raises(StateConflict):
        first.write(mine, my_token, [])  # a compaction: its seal takes the same slot
    with pytest.raises(StateConflict):
        first.write(state_of("fresh"), None, [])  # "no state yet" is stale too
    assert make_backend().read() == (theirs, their_token)


def test_compaction_against_compaction(make_backend: MakeBackend) -> None:
    first, second = make_backend(), make_backend()
    first.write(state_of("a"), None, [])
    mine, my_token = first.read()
    theirs, their_token = second.read()
    assert mine is not None and theirs is not None
    add(theirs, "theirs")
    their_token = second.write(theirs, their_token, [])
    add(mine, "mine")
    with pytest.raises(StateConflict):
        first.write(mine, my_token, [])
    assert make_backend().read() == (theirs, their_token)


def test_a_writer_with_an_old_token_cannot_fill_a_slot_freed_by_a_compaction(
    make_backend: MakeBackend, emulator: GcsServer
) -> None:
    """A compaction deletes the old journal; an append to it would never be read back."""
    slow, fast = make_backend(), make_backend()
    state = state_of("a")
    token = slow.write(state, None, [])
    token = slow.write(state, token, add(state, "b"))
    theirs, their_token = fast.read()
    assert theirs is not None
    add(theirs, "c")
    their_token = fast.write(theirs, their_token, [])  # compaction: old journal deleted
    with pytest.raises(StateConflict):
        slow.write(state, token, add(state, "late"))  # slot 3 of the old journal is free again
    assert make_backend().read() == (theirs, their_token)
    assert journal(emulator, slow) == []  # the orphan was removed again


def test_interrupted_compaction_is_finished_by_the_next_write(
    backend: GcsBackend, make_backend: MakeBackend, emulator: GcsServer
) -> None:
    state = state_of("a")
    token = backend.write(state, None, [])
    token = backend.write(state, token, add(state, "b"))
    generation = int(token.split(":")[0])
    put(emulator, backend, f"default.journal/{generation}/{3:012d}.json", SEAL)  # then crashed
    got, sealed = make_backend().read()
    assert got == state and sealed == f"{generation}:2:sealed"
    stale = make_backend()
    old_state, old_token = stale.read()
    assert old_state is not None
    with pytest.raises(StateConflict):  # the seal blocks appends to that journal
        backend.write(state, token, add(state, "c"))
    recovering = make_backend()
    current, current_token = recovering.read()
    assert current is not None and current_token == sealed
    new_token = recovering.write(current, current_token, add(current, "d"))
    with pytest.raises(StateConflict):  # two recoverers: one base upload wins
        stale.write(old_state, old_token, add(old_state, "e"))
    assert make_backend().read() == (current, new_token)
    assert journal(emulator, backend) == []


def test_journals_of_older_bases_in_the_base_are_ignored_and_cleaned_up(
    backend: GcsBackend, emulator: GcsServer
) -> None:
    state = state_of("a", serial=5)
    backend.write(state, None, [])
    older = state_of("a", serial=4)
    put(emulator, backend, "default.journal/1/000000000004.json", encode_line("1", older, []))
    put(emulator, backend, "default.journal/2/000000000009.json", b"{}")
    put(emulator, backend, "default.journal/2/000000000010.json", SEAL)  # claimed: sealed
    got, token = backend.read()
    assert got == state
    token = backend.write(state, token, add(state, "b"))
    backend.write(state, token, [])  # the compaction deletes them
    assert journal(emulator, backend) == []


def _foreign_entry(serial: int, lineage: str | None = None) -> bytes:
    entry = state_of("a", serial=serial)
    entry.lineage = lineage or entry.lineage
    return encode_line("1", entry, [])


@pytest.mark.parametrize(
    "data",
    [b"left over", _foreign_entry(6), _foreign_entry(2, "00000000-0000-4000-8000-0000000000dd")],
    ids=["not-an-entry", "newer-than-the-base", "another-lineage"],
)
def test_a_journal_of_an_older_base_not_in_the_base_is_refused(
    backend: GcsBackend, emulator: GcsServer, data: bytes
) -> None:
    backend.write(state_of("a", serial=5), None, [])
    put(emulator, backend, "default.journal/1/000000000006.json", data)
    with pytest.raises(DiagnosticError) as info:
        backend.read()
    message = text(info.value)
    assert f"the state journal {backend.url}/default.journal/1/ does not belong" in message
    assert f"substratus state recover --state {backend.url}" in message


def test_a_corrupt_journal_object_is_a_diagnostic(backend: GcsBackend, emulator: GcsServer) -> None:
    state = state_of("a")
    token = backend.write(state, None, [])
    generation = token.split(":")[0]
    name = f"default.journal/{generation}/{2:012d}.json"
    put(emulator, backend, name, b'{"base":"1","lineage":"x"}\n')
    with pytest.raises(DiagnosticError) as info:
        backend.read()
    message = text(info.value)
    assert f"{backend.location.object(name)} is corrupt" in message
    assert "gcloud storage rm" in message


def test_a_corrupt_base_is_a_diagnostic(backend: GcsBackend, emulator: GcsServer) -> None:
    put(emulator, backend, "default.json", b"{not json")
    with pytest.raises(DiagnosticError, match="is corrupt") as info:
        backend.read()
    assert "gcloud storage" in text(info.value)


def test_workspaces_and_deleting_one(make_backend: MakeBackend, emulator: GcsServer) -> None:
    staging = make_backend("staging")
    assert staging.workspaces() == ["default"]
    state = state_of("a")
    token = staging.write(state, None, [])
    token = staging.write(state, token, add(state, "b"))
    make_backend("prod.eu").write(state_of("x"), None, [])
    assert staging.workspaces() == ["default", "prod.eu", "staging"]
    stale = make_backend("staging")
    _, stale_token = stale.read()
    staging.delete_workspace(token)
    assert staging.workspaces() == ["default", "prod.eu"]
    assert not [n for n in objects(emulator, staging) if n.startswith("staging.")]
    with pytest.raises(StateConflict):
        stale.delete_workspace(stale_token)
