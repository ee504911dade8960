"""Mixed stores: every input is read from the store that produced it (by its recorded URL), and
the runtime's own store only decides where new versions go."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.failure import Failure
from substratus.engine.runtime import RunContext
from substratus.runtimes import artifacts_gcs
from substratus.runtimes.artifacts_gcs import MARKER, GsPath
from tests.runtimes.local.helpers import request, server_spec
from tests.support.gcs import GcsServer

from .conftest import MakeRuntime
from .helpers import delete_objects, files_under, many_spec


def inputs_seen(out: dict[str, Any]) -> dict[str, Any]:
    seen = json.loads(Path(out["artifacts_path"], "inputs.json").read_text())
    assert isinstance(seen, dict)
    return seen


def mirror_of(tmp_path: Path, machine: str, url: str) -> Path:
    where = GsPath.parse(url)
    return tmp_path / machine / ".substratus/cache/gcs" / where.bucket / where.key


def media_downloads(emulator: GcsServer) -> int:
    return sum(1 for e in emulator.proxy.log() if "alt=media" in e.query or "/download/" in e.path)


def test_a_trainer_reads_a_gcs_dataset_and_a_file_base_model(
    make_runtime: MakeRuntime,
    built: dict[str, Any],
    store_url: str,
    tmp_path: Path,
) -> None:
    data = make_runtime("a", store_url).apply(
        request("dataset", "d", many_spec({"tag": "data"}), inputs={"build": built}), RunContext()
    )
    base = make_runtime("b").apply(  # machine b, file:// store
        request("model", "base", many_spec({"tag": "base"}), inputs={"build": built}), RunContext()
    )
    assert base["artifacts"].startswith("file://")
    trainer = request(
        "model",
        "tuned",
        many_spec({"tag": "tuned"}, kind="trainer"),
        inputs={"build": built, "data": data, "model": base},
    )
    phases: list[str] = []
    out = make_runtime("b", store_url).apply(trainer, RunContext(phase=phases.append))

    assert out["artifacts"].startswith(f"{store_url}/default/models/tuned/")
    seen = inputs_seen(out)
    fetched = mirror_of(tmp_path, "b", data["artifacts"])
    assert seen["data"]["target"] == str(fetched)  # downloaded on machine b, not machine a's copy
    assert seen["data"]["tag"] == "data"
    assert seen["data"]["files"] == sorted([*files_under(Path(data["artifacts_path"])), MARKER])
    assert seen["model"]["target"] == base["artifacts_path"]
    assert seen["model"]["tag"] == "base"
    assert not fetched.stat().st_mode & 0o222
    assert (fetched / "empty" / "dir").is_dir()  # empty directories survive the round trip


def test_a_trainer_reads_a_file_dataset_and_a_gcs_base_model(
    make_runtime: MakeRuntime,
    built: dict[str, Any],
    store_url: str,
    tmp_path: Path,
) -> None:
    data = make_runtime("a").apply(
        request("dataset", "d", many_spec({"tag": "data"}), inputs={"build": built}), RunContext()
    )
    base = make_runtime("a", store_url).apply(
        request("model", "base", many_spec({"tag": "base"}), inputs={"build": built}), RunContext()
    )
    trainer = request(
        "model",
        "tuned",
        many_spec({"tag": "tuned"}, kind="trainer"),
        inputs={"build": built, "data": data, "model": base},
    )
    out = make_runtime("b").apply(trainer, RunContext())

    assert out["artifacts"].startswith("file://")
    seen = inputs_seen(out)
    assert seen["data"]["target"] == data["artifacts_path"]
    assert seen["model"]["target"] == str(mirror_of(tmp_path, "b", base["artifacts"]))
    assert seen["model"]["tag"] == "base"
    # on the machine that wrote it, a version's own mirror is reused without a download
    again = make_runtime("a", store_url).apply(
        request(
            "model", "t2", many_spec({}, kind="trainer"), inputs={"build": built, "model": base}
        ),
        RunContext(),
    )
    assert inputs_seen(again)["model"]["target"] == base["artifacts_path"]


def test_a_server_serves_a_model_from_gcs(
    make_runtime: MakeRuntime,
    built: dict[str, Any],
    store_url: str,
    tmp_path: Path,
) -> None:
    model = make_runtime("a", store_url).apply(
        request("model", "m", many_spec({"tag": "served"}), inputs={"build": built}), RunContext()
    )
    phases: list[str] = []
    server = request("modelserver", "s", server_spec(), inputs={"build": built, "model": model})
    out = make_runtime("b").apply(server, RunContext(phase=phases.append))
    assert phases[0] == f"fetching the model input {model['artifacts']}"
    with urllib.request.urlopen(out["endpoint"] + "/", timeout=60) as response:
        body = json.loads(response.read())
    assert body["model"] == sorted(p.name for p in Path(model["artifacts_path"]).iterdir())
    link = Path(out["run_dir"], "content", "model")
    assert link.resolve() == mirror_of(tmp_path, "b", model["artifacts"])
    assert (link / "weights.bin").read_text() == "served"


def test_a_mirror_is_reused_while_the_marker_generation_matches(
    make_runtime: MakeRuntime,
    built: dict[str, Any],
    emulator: GcsServer,
    store_url: str,
    tmp_path: Path,
) -> None:
    out = make_runtime("a", store_url).apply(
        request("dataset", "d", many_spec({"files": 6}), inputs={"build": built}), RunContext()
    )
    url, machine_b = out["artifacts"], tmp_path / "b" / ".substratus"
    emulator.proxy.reset_stats()
    paths: list[Path] = []
    threads = [
        threading.Thread(target=lambda: paths.append(artifacts_gcs.fetch(url, machine_b)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert paths == [mirror_of(tmp_path, "b", url)] * 4
    assert media_downloads(emulator) == 1 + 8  # the manifest once, each file once

    emulator.proxy.reset_stats()
    assert artifacts_gcs.fetch(url, machine_b) == paths[0]
    assert media_downloads(emulator) == 0

    where = GsPath.parse(url).child(MARKER)  # the version is published again: a new generation
    blob = emulator.client().bucket(where.bucket).blob(where.key)
    blob.upload_from_string(blob.download_as_bytes())
    emulator.proxy.reset_stats()
    assert artifacts_gcs.fetch(url, machine_b) == paths[0]
    assert media_downloads(emulator) == 1 + 8
    assert files_under(paths[0]) == files_under(Path(out["artifacts_path"]))


def test_an_incomplete_or_altered_input_is_refused(
    make_runtime: MakeRuntime,
    built: dict[str, Any],
    emulator: GcsServer,
    store_url: str,
) -> None:
    data = make_runtime("a", store_url).apply(
        request("dataset", "d", many_spec({}), inputs={"build": built}), RunContext()
    )
    trainer = request(
        "model", "t", many_spec({}, kind="trainer"), inputs={"build": built, "data": data}
    )
    where = GsPath.parse(data["artifacts"]).child("weights.bin")
    emulator.client().bucket(where.bucket).blob(where.key).upload_from_string("tampered")
    with pytest.raises(Failure, match=r"changed after it was completed: weights\.bin") as err:
        make_runtime("b").apply(trainer, RunContext())
    assert err.value.detail == "apply the resource that writes it again"

    delete_objects(emulator, data["artifacts"], only=MARKER)
    with pytest.raises(Failure, match=re.escape(f"{data['artifacts']} is not a complete version")):
        make_runtime("c").apply(trainer, RunContext())
