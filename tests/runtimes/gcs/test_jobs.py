"""Jobs whose artifact store is gs://: publishing, the completion marker, adoption, faults and
the errors a user can fix."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.failure import Failure
from substratus.engine.runtime import ResourceView, RunContext
from substratus.runtimes import artifacts_gcs
from substratus.runtimes.artifacts_gcs import MARKER
from substratus.runtimes.local import LocalRuntime
from tests.runtimes.local.helpers import pending, record, request
from tests.support.gcs import GcsServer

from .conftest import MakeRuntime
from .helpers import files_under, manifest, many_spec, objects, runs


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:16]


def test_a_job_uploads_its_version_and_writes_the_marker_last(
    gs_runtime: LocalRuntime,
    built: dict[str, Any],
    emulator: GcsServer,
    store_url: str,
    gcs_bucket: str,
    tmp_path: Path,
) -> None:
    counter = tmp_path / "count"
    req = request(
        "dataset", "d", many_spec({"files": 7, "counter": str(counter)}), inputs={"build": built}
    )
    phases: list[str] = []
    out = gs_runtime.apply(req, RunContext(phase=phases.append))

    url = f"{store_url}/default/datasets/d/{req.run_version}"
    mirror = tmp_path / "a/.substratus/cache/gcs" / gcs_bucket / "artifacts/default/datasets/d"
    assert out["artifacts"] == url
    assert out["artifacts_path"] == str(mirror / req.run_version)
    local = files_under(Path(out["artifacts_path"]))
    assert len(local) == 9  # 7 shards, weights.bin, inputs.json
    found = objects(emulator, url)
    assert set(found) == set(local) | {MARKER}
    assert all(found[rel].download_as_bytes() == data for rel, data in local.items())
    assert found[MARKER].generation > max(b.generation for n, b in found.items() if n != MARKER)
    marker = manifest(emulator, url)
    assert marker["dirs"] == ["empty/dir"]
    assert {rel: f["crc32c"] for rel, f in marker["files"].items()} == {
        rel: found[rel].crc32c for rel in local
    }
    uploads = [
        e for e in emulator.proxy.log() if e.path.startswith(f"/upload/storage/v1/b/{gcs_bucket}/")
    ]
    assert ["ifGenerationMatch=0" in e.query for e in uploads] == [False] * 9 + [True]
    assert f"uploading 9 files (0.0 MB) to {url}" in phases
    assert phases[-1] == f"marking {url} complete"
    assert not Path(out["artifacts_path"]).stat().st_mode & 0o222

    again: list[str] = []  # resuming the interrupted apply of this version
    resumed = dataclasses.replace(req, intent=gs_runtime.intent(req))
    assert gs_runtime.apply(resumed, RunContext(phase=again.append)) == out
    assert again == ["adopted the run an interrupted apply completed"]
    elsewhere: list[str] = []  # another machine: the marker alone says the version is complete
    out_b = LocalRuntime(tmp_path / "b", store_url).apply(
        resumed, RunContext(phase=elsewhere.append)
    )
    assert elsewhere == ["adopted the run an interrupted apply completed"]
    assert out_b["artifacts"] == url
    assert runs(counter) == 1


def test_a_version_completed_only_locally_is_published_by_the_next_apply(
    gs_runtime: LocalRuntime,
    built: dict[str, Any],
    emulator: GcsServer,
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(artifacts_gcs, "RETRY", artifacts_gcs.RETRY.with_timeout(1.0))
    counter = tmp_path / "count"
    req = request("dataset", "d", many_spec({"counter": str(counter)}), inputs={"build": built})
    url = f"{store_url}/default/datasets/d/{req.run_version}"
    with (
        emulator.proxy.faults(
            rate=1.0, statuses=(503,), only_methods=("POST",), object_regex=re.escape(MARKER)
        ),
        pytest.raises(Failure, match=r"GCS kept failing while writing .*substratus-complete"),
    ):
        gs_runtime.apply(req, RunContext())
    assert MARKER not in objects(emulator, url)
    intent = gs_runtime.intent(req)
    rec = record(req, {}, status="pending", pending=pending(req, intent))
    assert gs_runtime.refresh({req.address: rec})[req.address].pending == "completed"

    phases: list[str] = []
    out = gs_runtime.apply(dataclasses.replace(req, intent=intent), RunContext(phase=phases.append))
    assert phases[0].startswith("uploading 5 files")
    assert MARKER in objects(emulator, out["artifacts"])
    assert runs(counter) == 1


@pytest.mark.parametrize(
    "faults",
    [
        {"rate": 0.1, "statuses": (503, 429)},
        {"rate": 0.05, "statuses": (503,), "reset_rate": 0.03, "lost_response_rate": 0.05},
    ],
    ids=["10%-503-429", "503-resets-lost-responses"],
)
def test_publish_and_fetch_complete_despite_injected_faults(
    make_runtime: MakeRuntime,
    built: dict[str, Any],
    emulator: GcsServer,
    store_url: str,
    tmp_path: Path,
    faults: dict[str, Any],
) -> None:
    req = request("dataset", "d", many_spec({"files": 40, "size": 20000}), inputs={"build": built})
    with emulator.proxy.faults(seed=0, **faults):
        out = make_runtime("a", store_url).apply(req, RunContext())
        fetched = artifacts_gcs.fetch(out["artifacts"], tmp_path / "b")
        injected = emulator.proxy.stats()["faults"]
    assert injected >= 5
    local = files_under(Path(out["artifacts_path"]))
    assert files_under(fetched) == local
    found = objects(emulator, out["artifacts"])
    assert set(found) == set(local) | {MARKER}
    assert {r: f["crc32c"] for r, f in manifest(emulator, out["artifacts"])["files"].items()} == {
        r: found[r].crc32c for r in local
    }


def test_a_missing_bucket_fails_before_the_job_runs(
    make_runtime: MakeRuntime, built: dict[str, Any], tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    runtime = make_runtime("a", "gs://no-such-bucket-for-substratus/artifacts")
    req = request("dataset", "d", many_spec({"counter": str(counter)}), inputs={"build": built})
    with pytest.raises(
        Failure, match="the bucket gs://no-such-bucket-for-substratus does not exist"
    ) as err:
        runtime.apply(req, RunContext())
    assert "gcloud storage buckets create gs://no-such-bucket-for-substratus" in err.value.detail
    assert runs(counter) == 0
    rec = record(
        req,
        {
            "artifacts": "gs://no-such-bucket-for-substratus/artifacts/default/datasets/d/0123456789abcdef"
        },
    )
    with pytest.raises(DiagnosticError) as diag:
        runtime.refresh({req.address: rec})
    assert "does not exist" in diag.value.diagnostics[0].summary


def test_a_permission_denial_says_how_to_grant_access(
    gs_runtime: LocalRuntime, built: dict[str, Any], emulator: GcsServer
) -> None:
    req = request("dataset", "d", many_spec({}), inputs={"build": built})
    with (
        emulator.proxy.faults(rate=1.0, statuses=(403,), only_methods=("POST",)),
        pytest.raises(Failure, match="permission denied while uploading") as err,
    ):
        gs_runtime.apply(req, RunContext())
    assert "roles/storage.objectAdmin" in err.value.detail


def test_missing_credentials_are_a_diagnostic_and_a_run_error(
    built: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    runtime = LocalRuntime(tmp_path / "a", "gs://some-bucket/artifacts")
    spec = many_spec({})
    diagnostics = runtime.check([ResourceView("dataset.d", "dataset", spec)])
    assert [d.summary for d in diagnostics] == [
        "no Google Cloud credentials for the artifact store gs://some-bucket/artifacts"
    ]
    assert "gcloud auth application-default login" in diagnostics[0].detail
    assert runtime.check([ResourceView("modelserver.s", "modelserver", {})]) == []
    with pytest.raises(Failure, match="no usable Google Cloud credentials") as err:
        runtime.apply(request("dataset", "d", spec, inputs={"build": built}), RunContext())
    assert "GOOGLE_APPLICATION_CREDENTIALS" in err.value.detail
