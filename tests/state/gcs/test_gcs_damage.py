"""A damaged GCS state (the base object edited, replaced or removed under an unfolded journal)
is refused, never read as a smaller one, and ``recover`` rebuilds it; an interrupted clean-up
leaves journals that are still ignored."""

from __future__ import annotations

import json

import pytest

from substratus.engine.backend import StateConflict
from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.statefile import StateFile
from substratus.state.gcs import GcsBackend
from tests.state.gcs.conftest import MakeBackend
from tests.state.gcs.helpers import add, journal, objects, state_of, text
from tests.support.gcs import GcsServer


def journaled(backend: GcsBackend) -> tuple[StateFile, str, int]:
    """A base at serial 1 and entries 2–3, not folded (no lock, so no fold), as after a crash."""
    state = state_of("a")
    token = backend.write(state, None, [])
    for name in ("b", "c"):
        token = backend.write(state, token, add(state, name))
    return state, token, int(token.split(":")[0])


def put(server: GcsServer, backend: GcsBackend, name: str, data: bytes) -> None:
    bucket = server.direct_client().bucket(backend.location.bucket)
    bucket.blob(backend.location.object(name)).upload_from_string(data)


def contents(server: GcsServer, backend: GcsBackend) -> dict[str, bytes]:
    bucket = server.direct_client().bucket(backend.location.bucket)
    return {
        name: bucket.blob(backend.location.object(name)).download_as_bytes()
        for name in objects(server, backend)
    }


def test_an_edited_base_is_refused_then_rebuilt(
    backend: GcsBackend, make_backend: MakeBackend, emulator: GcsServer
) -> None:
    state, token, generation = journaled(backend)
    doc = json.loads(state_of("a").to_json())
    doc["resources"]["model.a"]["digest"] = "sha256:edited"
    put(emulator, backend, "default.json", json.dumps(doc).encode())
    before = contents(emulator, backend)

    with pytest.raises(DiagnosticError) as info:
        make_backend().read()
    message = text(info.value)
    assert f"the state journal {backend.url}/default.journal/{generation}/" in message
    assert f"does not belong to the state {backend.url}/default.json" in message
    assert "holds 2 writes after serial 1 (serials 2–3)" in message
    assert f"substratus state recover --state {backend.url}" in message
    assert f"{backend.url}/default.json#{generation}" in message  # the copy to start from
    with pytest.raises(StateConflict):  # its old token cannot write either
        backend.write(state, token, add(state, "d"))
    assert contents(emulator, backend) == before

    report = make_backend().recover(None)
    assert "2 write(s) of its journal (serials 2–3)" in report
    state.serial = 4  # the write refused above never happened; the rebuilt state is serial 4
    del state.resources["model.d"]
    got, _ = make_backend().read()
    assert got is not None and got.serial == 4
    assert got.resources["model.a"].digest == "sha256:edited"  # the edit is kept
    assert sorted(got.resources) == sorted(state.resources)
    assert journal(emulator, backend) == []
    assert contents(emulator, backend)["default.json.damaged"] == before["default.json"]


def test_a_removed_base_with_its_journal_is_refused(
    backend: GcsBackend, make_backend: MakeBackend, emulator: GcsServer
) -> None:
    state, _, generation = journaled(backend)
    emulator.direct_client().bucket(backend.location.bucket).blob(
        backend.location.object("default.json")
    ).delete()
    with pytest.raises(DiagnosticError) as info:
        make_backend().read()
    message = text(info.value)
    assert f"the state {backend.url}/default.json is missing" in message
    assert f"{backend.url}/default.journal/{generation}/ holds 2 writes" in message

    with pytest.raises(DiagnosticError, match="cannot rebuild"):  # nothing to start from
        make_backend().recover(None)
    copy = state_of("a").to_json().encode()  # e.g. an earlier `state pull`
    make_backend().recover(("pulled.json", copy))
    got, _ = make_backend().read()
    assert got is not None and sorted(got.resources) == sorted(state.resources)


def test_a_deleted_workspace_leaves_only_sealed_journals(
    backend: GcsBackend,
    make_backend: MakeBackend,
    emulator: GcsServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, token, _ = journaled(backend)
    monkeypatch.setattr(backend.bucket, "delete", _only_the_base(backend.bucket.delete, backend))
    backend.delete_workspace(token)  # its clean-up "crashed": the sealed journal is left
    assert len(journal(emulator, backend)) == 3
    assert make_backend().read() == (None, None)


def test_an_interrupted_clean_up_leaves_the_seal_last(
    backend: GcsBackend,
    make_backend: MakeBackend,
    emulator: GcsServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, token, generation = journaled(backend)
    deleted: list[str] = []
    real = backend.bucket.delete

    def first_only(name: str, **kwargs: object) -> None:
        if not deleted:
            real(name, **kwargs)  # type: ignore[arg-type]
        deleted.append(name)

    monkeypatch.setattr(backend.bucket, "delete", first_only)
    token = backend.write(state, token, [])  # a compaction whose clean-up stops after one
    monkeypatch.setattr(backend.bucket, "delete", real)
    assert deleted[-1].endswith(f"{generation}/{4:012d}.json")  # the seal goes last
    assert journal(emulator, backend) == [
        f"default.journal/{generation}/{serial:012d}.json" for serial in (3, 4)
    ]
    assert make_backend().read() == (state, token)


def _only_the_base(delete: object, backend: GcsBackend) -> object:
    def deleting(name: str, **kwargs: object) -> None:
        if name == backend.location.object("default.json"):
            delete(name, **kwargs)  # type: ignore[operator]

    return deleting
