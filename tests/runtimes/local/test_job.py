"""Dataset and Model jobs: the workload contract, failures, adoption, deletion and GC."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.attempts import FailedAttempt
from substratus.engine.failure import Failure
from substratus.engine.runtime import Detached, Garbage, Held, Owner, RunContext
from substratus.runtimes.local import LocalRuntime, supervise
from substratus.runtimes.local.files import read_json
from substratus.runtimes.local.job import supervisor_of
from substratus.runtimes.local.process import ProcessRef
from substratus.runtimes.local.workdir import RunFiles

from .helpers import (
    delete_request,
    digest_of,
    job_spec,
    pending,
    record,
    request,
    wait_for,
)

OWNER = Owner("this-lineage", "default")


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_job_runs_in_the_build_context_with_the_workload_contract(
    runtime: LocalRuntime, built: dict[str, Any], model_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("{}\n")
    params = {"name": "squad", "epochs": 2, "learning-rate": 0.1, "flags": {"a": True}}
    command = [sys.executable, "load.py"]
    spec = {
        "container": {"local": {"path": "."}, "command": command, "env": {"GREETING": "hello"}},
        "trainer": {"dataset": {"name": "d"}, "params": params},
    }
    inputs = {
        "build": built,
        "data": {"artifacts_path": str(data)},
        "model": {"artifacts_path": str(model_dir)},
    }
    req = request("model", "tuned", spec, inputs=inputs)
    intent = runtime.intent(req)
    assert not Path(intent["run_dir"]).exists()  # no side effects
    phases: list[str] = []
    out = runtime.apply(req, RunContext(phase=phases.append))

    version = runtime.store.path_for("default", "model", "tuned", req.run_version)
    assert version.name == req.run_version
    assert version.name.startswith(req.digest.removeprefix("sha256:")[:16] + "-")
    assert out == {
        "artifacts": version.as_uri(),
        "artifacts_path": str(version),
        "log": intent["log"],
        "run_dir": intent["run_dir"],
        "workdir": str(runtime.workdir.root),
    }
    result = json.loads((version / "out.json").read_text())
    assert result["params"] == params
    assert result["env"] == {
        "PARAM_NAME": "squad",
        "PARAM_EPOCHS": "2",
        "PARAM_LEARNING_RATE": "0.1",
        "PARAM_FLAGS": '{"a": true}',
        "GREETING": "hello",
    }
    assert result["cwd"] == built["context_dir"]
    assert result["data"] == ["train.jsonl"]
    assert result["model"] == ["weights.bin"]
    content = Path(out["run_dir"]) / "content"
    # what the job read: params.json, its owner's only; removed once the run succeeded
    assert result["params_text"] == json.dumps(params, indent=2) + "\n"
    assert result["params_mode"] == 0o600
    assert not (content / "params.json").exists()
    assert (content / "artifacts").resolve() == version
    assert not runtime.store.partial_path_for("default", "model", "tuned", req.run_version).exists()
    assert "loading squad" in Path(out["log"]).read_text()
    assert not version.stat().st_mode & 0o222  # completed versions are read-only
    assert any(p.startswith("running (pid ") for p in phases)


def test_job_failure_raises_with_the_log_tail(runtime: LocalRuntime, built: dict[str, Any]) -> None:
    req = request("dataset", "bad", job_spec({"fail": 3}), inputs={"build": built})
    with pytest.raises(Failure) as err:
        runtime.apply(req, RunContext())
    assert err.value.summary == "dataset job exited with code 3"
    tail = err.value.detail.splitlines()
    assert len(tail) == 20
    assert tail[-1] == "something went wrong"
    assert tail[0] == "line 11"
    assert err.value.log_path == runtime.intent(req)["log"]
    assert not runtime.store.path_for("default", "dataset", "bad", req.run_version).exists()
    observed = runtime.refresh({"dataset.bad": record(req, {}, pending=pending(req, {}))})
    assert observed["dataset.bad"].pending == "gone"
    assert "exited with code 3" in observed["dataset.bad"].pending_message


def test_job_retry_after_failure_runs_again(
    runtime: LocalRuntime, built: dict[str, Any], tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    flag = tmp_path / "fail-once"
    spec = job_spec({"counter": str(counter)})
    spec["container"]["command"] = [
        "sh",
        "-c",
        f'if [ ! -e {flag} ]; then touch {flag}; exit 1; fi; exec "{sys.executable}" load.py',
    ]
    req = request("dataset", "flaky", spec, inputs={"build": built})
    with pytest.raises(Failure, match="exited with code 1"):
        runtime.apply(req, RunContext())
    out = runtime.apply(req, RunContext())
    assert Path(out["artifacts_path"], "out.json").exists()
    assert runs(counter) == 1


def test_retries_start_a_failed_command_again_with_its_partial_artifacts(
    runtime: LocalRuntime, built: dict[str, Any], tmp_path: Path
) -> None:
    """Each attempt sees ``SUBSTRATUS_ATTEMPT`` and what the attempts before it wrote under
    ``artifacts/``; every failed one is reported (``ctx.restart``), the run succeeds once."""
    counter = tmp_path / "starts"
    script = (
        f'echo "$SUBSTRATUS_ATTEMPT" >> {counter}; '
        'a="$CONTENT_DIR/artifacts"; cat "$a"/step-* > /dev/null 2>&1; '
        'touch "$a/step-$SUBSTRATUS_ATTEMPT"; [ "$SUBSTRATUS_ATTEMPT" -ge 3 ]'
    )
    spec = {**job_spec({}, command=["sh", "-c", script]), "retries": 3}
    req = request("dataset", "flaky", spec, inputs={"build": built})
    failed: list[FailedAttempt] = []
    out = runtime.apply(req, RunContext(restart=failed.append))
    assert counter.read_text().split() == ["1", "2", "3"]
    assert sorted(p.name for p in Path(out["artifacts_path"]).glob("step-*")) == [
        "step-1",
        "step-2",
        "step-3",
    ]
    assert sorted({(a.number, a.reason, a.counted, a.final) for a in failed}) == [
        (1, "exit code 1", True, False),
        (2, "exit code 1", True, False),
    ]
    log = Path(out["log"]).read_text()
    assert "substratus: attempt 1 of 4 failed (exit code 1); attempt 2 starts" in log


def test_retries_used_up_fail_naming_the_attempts(
    runtime: LocalRuntime, built: dict[str, Any]
) -> None:
    spec = {**job_spec({"fail": 3}), "retries": 1}
    req = request("dataset", "bad", spec, inputs={"build": built})
    failed: list[FailedAttempt] = []
    with pytest.raises(Failure) as err:
        runtime.apply(req, RunContext(restart=failed.append))
    assert err.value.summary == "dataset job exited with code 3 (attempt 2 of 2)"
    assert max(a.number for a in failed) == 2 and any(a.final for a in failed)


def test_a_stopped_job_does_not_start_again(
    runtime: LocalRuntime, built: dict[str, Any], tmp_path: Path
) -> None:
    """A supervisor told to stop (SIGTERM, as ``delete`` does) forwards it and starts no other
    attempt, however many retries are left."""
    counter = tmp_path / "starts"
    script = f'echo "$SUBSTRATUS_ATTEMPT" >> {counter}; exec sleep 60'
    spec = {**job_spec({}, command=["sh", "-c", script]), "retries": 5}
    req = request("dataset", "long", spec, inputs={"build": built})
    ctx = RunContext()

    def detach_once_started() -> None:
        wait_for(counter.exists)
        ctx.cancelled.set()

    threading.Thread(target=detach_once_started, daemon=True).start()
    with pytest.raises(Detached):
        runtime.apply(req, ctx)
    runtime.delete(delete_request(req, {}), RunContext())  # SIGTERM, then waits for the end
    assert counter.read_text().split() == ["1"]


def test_a_command_that_does_not_exist_fails_clearly(
    runtime: LocalRuntime, built: dict[str, Any]
) -> None:
    spec = job_spec({})
    spec["container"]["command"] = ["no-such-program-xyz"]
    with pytest.raises(Failure, match="exited with code 127") as err:
        runtime.apply(request("dataset", "missing", spec, inputs={"build": built}), RunContext())
    assert "cannot run 'no-such-program-xyz'" in err.value.detail


def test_a_job_that_cannot_be_started_names_the_os_error(
    runtime: LocalRuntime, built: dict[str, Any]
) -> None:
    runs_of_kind = runtime.workdir.resource_runs("default", "dataset", "x").parent
    runs_of_kind.parent.mkdir(parents=True)
    runs_of_kind.write_text("not a directory")
    req = request("dataset", "x", job_spec({}), inputs={"build": built})
    with pytest.raises(Failure) as err:
        runtime.apply(req, RunContext())
    assert err.value.summary.startswith(
        f"cannot start the dataset job in {runtime.intent(req)['run_dir']}: [Errno"
    )


def test_a_supervisor_without_room_for_its_records_does_not_start_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "ran"
    argv = ["--run-dir", str(run), "--partial", str(tmp_path / "p"), "--final", str(tmp_path / "f")]
    code = supervise.main([*argv, "--", "touch", str(marker)])
    assert code == 126 and not marker.exists()
    assert (run / "exit_code").read_text() == (
        "126\nthe job was not started: No space left on device\n"
    )
    assert not RunFiles(run).reserve.exists()


def test_only_the_run_an_interrupted_apply_completed_is_adopted(
    runtime: LocalRuntime, built: dict[str, Any], tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    spec = job_spec({"counter": str(counter)})
    req = request("dataset", "d", spec, inputs={"build": built})
    first = runtime.apply(req, RunContext())
    phases: list[str] = []
    resumed = dataclasses.replace(req, intent=runtime.intent(req))
    assert runtime.apply(resumed, RunContext(phase=phases.append)) == first
    assert runs(counter) == 1
    assert phases == ["adopted the run an interrupted apply completed"]

    again = request("dataset", "d", spec, digest=req.digest, inputs={"build": built})
    second = runtime.apply(again, RunContext(phase=phases.append))  # same digest, a new run
    assert runs(counter) == 2
    assert second["artifacts_path"] != first["artifacts_path"]
    assert Path(first["artifacts_path"], "out.json").exists()  # the earlier version is kept


def test_a_detached_job_keeps_running_and_the_next_apply_adopts_it(
    runtime: LocalRuntime, built: dict[str, Any], tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    params = {"counter": str(counter), "sleep": 1.0}
    req = request("dataset", "slow", job_spec(params), inputs={"build": built})
    intent = runtime.intent(req)
    ctx = RunContext()
    threading.Timer(0.3, ctx.cancelled.set).start()
    with pytest.raises(Detached):
        runtime.apply(req, ctx)

    run = RunFiles(Path(intent["run_dir"]))
    wait_for(run.child.exists)  # its command started: the record names its supervisor
    rec = record(req, {}, status="pending", pending=pending(req, intent))
    observed = runtime.refresh({"dataset.slow": rec})["dataset.slow"]
    assert observed.pending == "running"
    supervisor = supervisor_of(run)
    assert supervisor is not None
    assert observed.pending_message == f"pid {supervisor.pid} left running by an interrupted apply"

    phases: list[str] = []
    again = dataclasses.replace(req, intent=intent)  # the same version, as the engine resumes it
    out = runtime.apply(again, RunContext(phase=phases.append))
    assert phases[0] == f"waiting for pid {supervisor.pid} started by an interrupted apply"
    assert Path(out["artifacts_path"], "out.json").exists()
    assert runs(counter) == 1
    assert runtime.refresh({"dataset.slow": rec})["dataset.slow"].pending == "completed"


APPLY_SCRIPT = """
import json, sys
from pathlib import Path
from substratus.engine.runtime import RunContext, RunRequest
from substratus.runtimes.local import LocalRuntime
args = json.loads(sys.argv[1])
rt = LocalRuntime(Path(args["workdir"]), args["artifacts"], poll_interval=0.05)
rt.apply(RunRequest(**args["request"]), RunContext(phase=lambda m: print(m, flush=True)))
"""


def test_a_job_survives_kill_9_of_the_applying_process(
    runtime: LocalRuntime, built: dict[str, Any], tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    params = {"counter": str(counter), "sleep": 1.0}
    req = request("dataset", "crash", job_spec(params), inputs={"build": built})
    args = {
        "workdir": str(runtime.workdir.root),
        "artifacts": runtime.store.url,
        "request": {
            "address": req.address,
            "kind": req.kind,
            "namespace": req.namespace,
            "name": req.name,
            "digest": req.digest,
            "spec": dict(req.spec),
            "inputs": {"build": built},
            "version": req.version,
        },
    }
    applier = subprocess.Popen(
        [sys.executable, "-c", APPLY_SCRIPT, json.dumps(args)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert applier.stdout is not None
        assert applier.stdout.readline().startswith("running (pid ")
    finally:
        applier.send_signal(signal.SIGKILL)
        applier.wait()
    wait_for(lambda: runs(counter) == 1)  # the job goes on without its apply

    intent = runtime.intent(req)
    rec = record(req, {}, status="pending", pending=pending(req, intent))
    assert runtime.refresh({req.address: rec})[req.address].pending == "running"
    out = runtime.apply(dataclasses.replace(req, intent=intent), RunContext())
    assert json.loads(Path(out["artifacts_path"], "out.json").read_text())["params"] == params
    assert runs(counter) == 1


def test_refresh_reports_deleted_artifacts(runtime: LocalRuntime, built: dict[str, Any]) -> None:
    req = request("dataset", "d", job_spec({}), inputs={"build": built})
    out = runtime.apply(req, RunContext())
    assert runtime.refresh({"dataset.d": record(req, out)})["dataset.d"].status == "present"
    runtime.store.remove(Path(out["artifacts_path"]))
    observed = runtime.refresh({"dataset.d": record(req, out)})["dataset.d"]
    assert observed.status == "missing"
    assert (
        observed.message == f"artifacts at {out['artifacts_path']} were deleted outside substratus"
    )


def test_delete_removes_versions_and_runs_unless_artifacts_are_retained(
    runtime: LocalRuntime, built: dict[str, Any]
) -> None:
    req = request("dataset", "d", job_spec({}), inputs={"build": built})
    out = runtime.apply(req, RunContext())
    runtime.delete(delete_request(req, out, retain_artifacts=True), RunContext())
    assert Path(out["artifacts_path"]).is_dir()
    assert not Path(out["run_dir"]).exists()

    runtime.delete(delete_request(req, out), RunContext())
    assert not Path(out["artifacts_path"]).exists()
    assert not runtime.store.resource_dir("default", "dataset", "d").exists()
    runtime.delete(delete_request(req, out), RunContext())  # already gone is fine


def test_delete_stops_a_running_job(
    runtime: LocalRuntime, built: dict[str, Any], tmp_path: Path
) -> None:
    req = request("dataset", "long", job_spec({"sleep": 30}), inputs={"build": built})
    ctx = RunContext()
    threading.Timer(0.3, ctx.cancelled.set).start()
    with pytest.raises(Detached):
        runtime.apply(req, ctx)
    run_dir = Path(runtime.intent(req)["run_dir"])
    wait_for(lambda: (run_dir / "child.json").exists())
    child = ProcessRef.from_json(read_json(run_dir / "child.json"))
    assert child is not None and child.alive()
    partial = runtime.store.partial_path_for("default", "dataset", "long", req.run_version)
    garbage = [Garbage(req.address, req.kind, req.namespace, req.name, req.run_version)]
    assert runtime.collect_garbage(OWNER, garbage) == set()  # a running job's output stays
    assert partial.is_dir()
    assert run_dir.is_dir()
    pending_only = dataclasses.replace(delete_request(req, {}), spec={}, digest="")
    runtime.delete(pending_only, RunContext())  # a record of a create that never finished
    assert not child.alive()
    assert not run_dir.exists()
    assert not partial.exists()


def test_collect_garbage_removes_only_the_garbage_it_is_given_and_not_what_others_hold(
    runtime: LocalRuntime, built: dict[str, Any]
) -> None:
    reqs = [
        request(
            "dataset", "d", job_spec({"v": i}), digest=digest_of(f"v{i}"), inputs={"build": built}
        )
        for i in range(4)
    ]
    outs = [runtime.apply(req, RunContext()) for req in reqs]
    foreign = runtime.store.partial_path_for("default", "dataset", "d", "0123456789abcdef-000000")
    foreign.mkdir()  # another state's run in progress: not ours to collect
    other = Owner("other-lineage", "default")
    held = [Held("dataset", "default", "d", reqs[1].run_version)]
    runtime.hold(other, held)  # another state uses v1

    garbage = [Garbage(r.address, r.kind, r.namespace, r.name, r.run_version) for r in reqs[:2]]
    removed = runtime.collect_garbage(OWNER, garbage)
    assert removed == {(reqs[0].address, reqs[0].run_version)}
    assert not Path(outs[0]["artifacts_path"]).exists()
    assert not Path(outs[0]["run_dir"]).exists()
    assert Path(outs[1]["artifacts_path"]).is_dir()  # held by the other state
    for out in outs[2:]:
        assert Path(out["artifacts_path"]).is_dir()
        assert Path(out["run_dir"]).is_dir()
    assert foreign.is_dir()

    runtime.hold(other, [])  # released: the next collection removes it
    assert runtime.collect_garbage(OWNER, garbage[1:]) == {(reqs[1].address, reqs[1].run_version)}
    assert not Path(outs[1]["artifacts_path"]).exists()


def test_inputs_of_a_job_must_exist(
    runtime: LocalRuntime, built: dict[str, Any], tmp_path: Path
) -> None:
    spec = job_spec({})
    inputs = {"build": built, "data": {"artifacts_path": str(tmp_path / "gone")}}
    with pytest.raises(Failure, match=r"the data input .* does not exist"):
        runtime.apply(request("dataset", "d", spec, inputs=inputs), RunContext())


def test_model_with_only_a_url_is_checked(runtime: LocalRuntime, model_dir: Path) -> None:
    req = request("model", "base", {"url": model_dir.as_uri()})
    assert runtime.intent(req) == {}
    out = runtime.apply(req, RunContext())
    assert out == {
        "artifacts": model_dir.as_uri(),
        "artifacts_path": str(model_dir),
        "workdir": str(runtime.workdir.root),
    }
    relative = request("model", "rel", {"url": "weights"}, config_dir=str(model_dir.parent))
    assert runtime.apply(relative, RunContext())["artifacts_path"] == str(model_dir)
    with pytest.raises(Failure, match="do not exist"):
        runtime.apply(request("model", "x", {"url": model_dir.as_uri() + "-gone"}), RunContext())
    os.rename(model_dir, model_dir.with_name("moved"))
    assert runtime.refresh({"model.base": record(req, out)})["model.base"].status == "missing"


def test_read_external_finds_the_newest_completed_version(
    runtime: LocalRuntime, built: dict[str, Any]
) -> None:
    assert runtime.read_external("dataset", "default", "shared") is None
    outs = []
    for i in range(2):
        spec = job_spec({"v": i})
        req = request("dataset", "shared", spec, digest=digest_of(f"s{i}"), inputs={"build": built})
        outs.append(runtime.apply(req, RunContext()))
    runtime.store.partial_path_for("default", "dataset", "shared", digest_of("s3")).mkdir()
    found = runtime.read_external("dataset", "default", "shared")
    assert found is not None
    assert found.digest == Path(outs[1]["artifacts_path"]).name
    assert found.outputs == {
        "artifacts": outs[1]["artifacts"],
        "artifacts_path": outs[1]["artifacts_path"],
    }
    assert runtime.read_external("modelserver", "default", "shared") is None
