"""ModelServers and Notebooks: detached processes, health, update, refresh and delete."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import signal
import socket
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.failure import Failure
from substratus.engine.runtime import Detached, RunContext
from substratus.runtimes.local import LocalRuntime
from substratus.runtimes.local.process import ProcessRef

from .helpers import delete_request, digest_of, pending, record, request, server_spec, wait_for


def get(url: str) -> tuple[int, dict[str, Any]]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        conn.request("GET", parts.path + ("?" + parts.query if parts.query else "") or "/")
        response = conn.getresponse()
        body = response.read()
        return response.status, json.loads(body) if response.status == 200 else {}
    finally:
        conn.close()


def ref_of(outputs: dict[str, Any]) -> ProcessRef:
    return ProcessRef(outputs["pid"], outputs["pid_start"])


@pytest.fixture
def inputs(built: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    return {"build": built, "model": {"artifacts_path": str(model_dir)}}


def test_server_starts_detached_and_answers(
    runtime: LocalRuntime, inputs: dict[str, Any], built: dict[str, Any]
) -> None:
    spec = server_spec({"max-tokens": 5}, quantization={"bits": 8})
    spec["container"]["env"] = {"EXTRA": "1"}
    req = request("modelserver", "srv", spec, inputs=inputs)
    out = runtime.apply(req, RunContext())
    assert set(out) == {"pid", "pid_start", "port", "endpoint", "log", "run_dir", "workdir"}
    assert out["endpoint"] == f"http://127.0.0.1:{out['port']}"
    assert os.getpgid(out["pid"]) == out["pid"]  # its own session, survives the apply
    status, body = get(out["endpoint"] + "/")
    assert status == 200
    env = body["env"]
    assert env["PORT"] == str(out["port"])
    assert env["CONTENT_DIR"] == str(Path(out["run_dir"]) / "content")
    assert env["QUANTIZATION_BITS"] == "8"
    assert env["MODEL_LOAD_IN_8BIT"] == "true"
    assert "MODEL_LOAD_IN_4BIT" not in env
    assert env["PARAM_MAX_TOKENS"] == "5"
    assert env["EXTRA"] == "1"
    assert body["cwd"] == built["context_dir"]
    assert body["model"] == ["weights.bin"]
    assert "listening on" in Path(out["log"]).read_text()

    resumed = dataclasses.replace(req, intent=runtime.intent(req))
    assert runtime.apply(resumed, RunContext()) == out  # an interrupted apply's process: adopted
    runtime.delete(delete_request(req, out), RunContext())
    assert not ref_of(out).alive()
    assert not Path(out["run_dir"]).exists()
    runtime.delete(delete_request(req, out), RunContext())  # already gone is fine


def test_update_stops_the_old_process_then_starts_the_new_one_on_its_port(
    runtime: LocalRuntime, inputs: dict[str, Any]
) -> None:
    old_req = request("modelserver", "srv", server_spec({"v": 1}), inputs=inputs)
    old = runtime.apply(old_req, RunContext())
    phases: list[str] = []
    notices: list[str] = []
    new_req = request(
        "modelserver",
        "srv",
        server_spec({"v": 2}),
        inputs=inputs,
        action="update",
        prior_outputs=old,
    )
    new = runtime.apply(new_req, RunContext(phase=phases.append, notice=notices.append))
    assert new["pid"] != old["pid"]
    assert ref_of(new).alive()
    assert not ref_of(old).alive()
    assert (new["port"], new["endpoint"]) == (old["port"], old["endpoint"])
    assert get(new["endpoint"] + "/")[1]["env"]["PARAM_V"] == "2"
    waiting = next(i for i, p in enumerate(phases) if p.startswith("waiting for"))
    assert phases.index(f"stopping pid {old['pid']}") < waiting  # one port: stop, then start
    assert notices == []


def test_a_recorded_port_held_by_another_program_moves_the_server_and_says_so(
    runtime: LocalRuntime, inputs: dict[str, Any]
) -> None:
    req = request("modelserver", "srv", server_spec(), inputs=inputs)
    old = runtime.apply(req, RunContext())
    os.killpg(old["pid"], signal.SIGKILL)  # the server died (drift) ...
    wait_for(lambda: not ref_of(old).alive())
    with socket.socket() as squatter:  # ... and another program took its port
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", old["port"]))
        squatter.listen()
        again = request("modelserver", "srv", server_spec(), inputs=inputs, prior_outputs=old)
        notices: list[str] = []
        new = runtime.apply(again, RunContext(notice=notices.append))
    assert new["port"] != old["port"] and get(new["endpoint"] + "/")[0] == 200
    assert notices == [
        f"port {old['port']} is in use by another program: the endpoint moves from "
        f"{old['endpoint']} to {new['endpoint']}"
    ]


def test_an_update_that_cannot_start_leaves_the_old_process_serving(
    runtime: LocalRuntime, inputs: dict[str, Any]
) -> None:
    old = runtime.apply(request("modelserver", "srv", server_spec(), inputs=inputs), RunContext())
    spec = server_spec({"v": 2})
    spec["container"]["command"] = []
    broken = request("modelserver", "srv", spec, inputs=inputs, prior_outputs=old)
    with pytest.raises(Failure, match=r"container\.command is not set"):
        runtime.apply(broken, RunContext())
    assert ref_of(old).alive() and get(old["endpoint"] + "/")[0] == 200


def test_a_server_that_exits_fails_with_its_log(
    runtime: LocalRuntime, inputs: dict[str, Any]
) -> None:
    req = request("modelserver", "bad", server_spec({"crash": True}), inputs=inputs)
    with pytest.raises(Failure) as err:
        runtime.apply(req, RunContext())
    assert err.value.summary.startswith("modelserver process ")
    assert err.value.summary.endswith("exited with code 4 before answering GET /")
    assert "cannot load the model" in err.value.detail


def test_a_server_that_never_gets_healthy_times_out_and_is_stopped(
    runtime: LocalRuntime, inputs: dict[str, Any]
) -> None:
    req = request("modelserver", "slow", server_spec({"startup": 30}), inputs=inputs)
    with pytest.raises(Failure, match=r"did not answer GET .* within 0.5 s"):
        runtime.apply(req, RunContext(timeout=0.5))
    out = json.loads((Path(runtime.intent(req)["run_dir"]) / "process.json").read_text())
    assert not ref_of(out).alive()


def test_refresh_sees_healthy_unhealthy_and_killed_servers(
    runtime: LocalRuntime, inputs: dict[str, Any]
) -> None:
    req = request("modelserver", "srv", server_spec(), inputs=inputs)
    out = runtime.apply(req, RunContext())
    records = {"modelserver.srv": record(req, out)}
    assert runtime.refresh(records)["modelserver.srv"].status == "present"

    (Path(out["run_dir"]) / "content" / "sick").touch()
    observed = runtime.refresh(records)["modelserver.srv"]
    assert observed.status == "degraded"
    assert observed.message == (
        f"process {out['pid']} is running but GET / on port {out['port']} answered 503"
    )

    os.killpg(out["pid"], signal.SIGKILL)
    wait_for(lambda: not ref_of(out).alive())
    observed = runtime.refresh(records)["modelserver.srv"]
    assert observed.status == "missing"
    assert observed.message == f"process {out['pid']} is not running"

    reused = dict(out, pid_start=out["pid_start"] + 1)  # same pid, other process: not ours
    assert runtime.refresh({"x": record(req, reused)})["x"].status == "missing"


def test_an_interrupted_start_is_pending_and_adopted(
    runtime: LocalRuntime, inputs: dict[str, Any]
) -> None:
    req = request("modelserver", "srv", server_spec({"startup": 0.6}), inputs=inputs)
    intent = runtime.intent(req)
    ctx = RunContext()
    threading.Timer(0.2, ctx.cancelled.set).start()
    with pytest.raises(Detached):
        runtime.apply(req, ctx)
    rec = record(req, {}, status="pending", pending=pending(req, intent))
    observed = runtime.refresh({"s": rec})["s"]
    assert observed.pending == "running"
    assert observed.pending_message.endswith("left running by an interrupted apply")

    wait_for(lambda: runtime.refresh({"s": rec})["s"].pending == "completed")
    phases: list[str] = []
    again = dataclasses.replace(req, intent=intent)  # the same version, as the engine resumes it
    out = runtime.apply(again, RunContext(phase=phases.append))
    assert phases[0] == f"adopting pid {out['pid']}"
    assert get(out["endpoint"] + "/")[0] == 200

    os.killpg(out["pid"], signal.SIGKILL)
    wait_for(lambda: not ref_of(out).alive())
    assert runtime.refresh({"s": rec})["s"].pending == "gone"


def test_replicas_zero_stops_the_server(runtime: LocalRuntime, inputs: dict[str, Any]) -> None:
    req = request("modelserver", "srv", server_spec(), inputs=inputs)
    out = runtime.apply(req, RunContext())
    zero = request(
        "modelserver",
        "srv",
        server_spec(replicas=0),
        inputs=inputs,
        action="update",
        prior_outputs=out,
    )
    assert runtime.apply(zero, RunContext()) == {
        "replicas": 0,
        "workdir": str(runtime.workdir.root),
    }
    assert not ref_of(out).alive()
    assert runtime.refresh({"s": record(zero, {"replicas": 0})})["s"].status == "present"


def test_notebook_runs_notebook_sh_with_a_token_and_suspends(
    runtime: LocalRuntime, built: dict[str, Any], model_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    spec = {
        "container": {"local": {"path": "."}, "env": {}},
        "params": {},
        "suspend": False,
    }
    inputs = {
        "build": built,
        "model": {"artifacts_path": str(model_dir)},
        "data": {"artifacts_path": str(data)},
    }
    req = request("notebook", "nb", spec, inputs=inputs, digest=digest_of("nb1"))
    out = runtime.apply(req, RunContext())
    artifacts = runtime.store.notebook_dir("default", "nb")
    assert out["artifacts_path"] == str(artifacts)
    assert out["url"].startswith(out["endpoint"] + "/?token=")
    status, body = get(out["url"])
    assert status == 200
    assert body["env"]["NOTEBOOK_TOKEN"] == out["url"].split("token=")[1]
    assert get(out["endpoint"] + "/")[0] == 403  # healthy for a notebook: any answer < 500
    content = Path(out["run_dir"]) / "content"
    assert (content / "data").resolve() == data
    assert (content / "model").resolve() == model_dir
    (content / "artifacts" / "work.ipynb").write_text("{}")

    records = {"notebook.nb": record(req, out)}
    assert runtime.refresh(records)["notebook.nb"].status == "present"

    suspended_req = request(
        "notebook",
        "nb",
        dict(spec, suspend=True),
        inputs=inputs,
        action="update",
        prior_outputs=out,
    )
    suspended = runtime.apply(suspended_req, RunContext())
    assert suspended["suspended"] is True
    assert not ref_of(out).alive()
    assert (artifacts / "work.ipynb").exists()
    assert runtime.refresh({"n": record(suspended_req, suspended)})["n"].status == "present"

    resumed = runtime.apply(req, RunContext())  # the same digest again: a fresh process
    assert resumed["pid"] != out["pid"]
    assert (Path(resumed["run_dir"]) / "content" / "artifacts" / "work.ipynb").exists()

    runtime.delete(delete_request(req, resumed, retain_artifacts=True), RunContext())
    assert not ref_of(resumed).alive()
    assert (artifacts / "work.ipynb").exists()
    runtime.delete(delete_request(req, resumed), RunContext())
    assert not artifacts.exists()
