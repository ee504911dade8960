"""Refresh (markers, one list call per store), read_external, garbage collection and delete of
versions in a gs:// store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from substratus.engine.runtime import Garbage, Held, Owner, RunContext
from substratus.runtimes.artifacts_gcs import MARKER, GsPath
from substratus.runtimes.local import LocalRuntime
from tests.runtimes.local.helpers import delete_request, digest_of, record, request
from tests.support.gcs import GcsServer

from .conftest import MakeRuntime
from .helpers import delete_objects, list_calls, many_spec, objects

OWNER = Owner("this-lineage", "default")


def test_refresh_checks_every_marker_with_one_list_call(
    make_runtime: MakeRuntime,
    gs_runtime: LocalRuntime,
    built: dict[str, Any],
    emulator: GcsServer,
    gcs_bucket: str,
) -> None:
    records = {}
    for kind, name in (("dataset", "d1"), ("dataset", "d2"), ("model", "m")):
        req = request(kind, name, many_spec({}), inputs={"build": built})
        records[req.address] = record(req, gs_runtime.apply(req, RunContext()))
    local = request("dataset", "f", many_spec({}), inputs={"build": built})
    records[local.address] = record(local, make_runtime("a").apply(local, RunContext()))

    emulator.proxy.reset_stats()
    observed = gs_runtime.refresh(records)
    assert {a: o.status for a, o in observed.items()} == dict.fromkeys(records, "present")
    assert list_calls(emulator, gcs_bucket) == 1
    assert emulator.proxy.stats()["requests_total"] == 1

    d1, d2 = records["dataset.d1"].outputs["artifacts"], records["dataset.d2"].outputs["artifacts"]
    delete_objects(emulator, d1, only=MARKER)  # the files are still there: incomplete
    delete_objects(emulator, d2)
    observed = gs_runtime.refresh(records)
    assert observed["dataset.d1"].status == "missing"
    assert observed["dataset.d1"].message == f"artifacts at {d1} were deleted outside substratus"
    assert observed["dataset.d2"].status == "missing"
    assert observed["model.m"].status == "present"
    assert observed["dataset.f"].status == "present"
    # the truth is the bucket, not the local mirror (which still exists on this machine)
    assert Path(records["dataset.d1"].outputs["artifacts_path"]).is_dir()


def test_read_external_finds_the_newest_complete_version(
    make_runtime: MakeRuntime,
    gs_runtime: LocalRuntime,
    built: dict[str, Any],
    emulator: GcsServer,
    store_url: str,
    tmp_path: Path,
) -> None:
    assert gs_runtime.read_external("dataset", "default", "shared") is None
    outs = []
    for i in range(2):
        spec = many_spec({"v": i})
        req = request("dataset", "shared", spec, digest=digest_of(f"s{i}"), inputs={"build": built})
        outs.append(gs_runtime.apply(req, RunContext()))
    incomplete = GsPath.parse(f"{store_url}/default/datasets/shared/ffffffffffffffff/x.bin")
    emulator.client().bucket(incomplete.bucket).blob(incomplete.key).upload_from_string("x")

    found = gs_runtime.read_external("dataset", "default", "shared")
    assert found is not None
    assert found.digest == Path(outs[1]["artifacts_path"]).name
    assert found.outputs == {
        "artifacts": outs[1]["artifacts"],
        "artifacts_path": outs[1]["artifacts_path"],
    }
    elsewhere = make_runtime("b", store_url).read_external("dataset", "default", "shared")
    assert elsewhere is not None and elsewhere.digest == found.digest
    assert elsewhere.outputs["artifacts"] == outs[1]["artifacts"]
    assert elsewhere.outputs["artifacts_path"].startswith(str(tmp_path / "b" / ".substratus"))
    assert gs_runtime.read_external("modelserver", "default", "shared") is None


def test_collect_garbage_removes_only_the_state_s_garbage_and_keeps_what_others_hold(
    make_runtime: MakeRuntime,
    gs_runtime: LocalRuntime,
    built: dict[str, Any],
    emulator: GcsServer,
    store_url: str,
) -> None:
    reqs = [
        request(
            "dataset", "d", many_spec({"v": i}), digest=digest_of(f"v{i}"), inputs={"build": built}
        )
        for i in range(4)
    ]
    # v0 was written by another machine of this state: this one knows it only from the state
    outs = [make_runtime("b", store_url).apply(reqs[0], RunContext())]
    outs += [gs_runtime.apply(req, RunContext()) for req in reqs[1:]]
    other = Owner("other-lineage", "default")
    make_runtime("c", store_url).hold(other, [Held("dataset", "default", "d", reqs[1].run_version)])

    garbage = [Garbage(r.address, r.kind, r.namespace, r.name, r.run_version) for r in reqs[:2]]
    removed = gs_runtime.collect_garbage(OWNER, garbage)
    assert removed == {(reqs[0].address, reqs[0].run_version)}
    assert objects(emulator, outs[0]["artifacts"]) == {}
    for out in outs[1:]:  # v1 is held by the other state; v2 and v3 are not garbage
        assert MARKER in objects(emulator, out["artifacts"])
        assert Path(out["artifacts_path"]).is_dir()

    make_runtime("c", store_url).hold(other, [])
    assert objects(emulator, f"{store_url}/.substratus/holds") == {}
    assert gs_runtime.collect_garbage(OWNER, garbage[1:]) == {
        (reqs[1].address, reqs[1].run_version)
    }
    assert objects(emulator, outs[1]["artifacts"]) == {}


def test_delete_removes_every_version_unless_artifacts_are_retained(
    gs_runtime: LocalRuntime,
    built: dict[str, Any],
    emulator: GcsServer,
    store_url: str,
) -> None:
    req = request("dataset", "d", many_spec({}), inputs={"build": built})
    out = gs_runtime.apply(req, RunContext())
    gs_runtime.delete(delete_request(req, out, retain_artifacts=True), RunContext())
    assert MARKER in objects(emulator, out["artifacts"])
    assert not Path(out["run_dir"]).exists()

    gs_runtime.delete(delete_request(req, out), RunContext())
    assert objects(emulator, f"{store_url}/default/datasets/d") == {}
    assert not Path(out["artifacts_path"]).exists()
    assert not gs_runtime.store.resource_dir("default", "dataset", "d").exists()
    gs_runtime.delete(delete_request(req, out), RunContext())  # already gone is fine
    assert gs_runtime.refresh({"dataset.d": record(req, out)})["dataset.d"].status == "missing"
