"""Jobs supervised by the job host (one process, a thread per run): what it must not change,
and what it adds.

A job's end is seen when its supervisor lets go of the run's lock, not by polling: a runtime
whose poll interval is an hour still finishes a job at once. The command never holds the run's
lock (a command left behind by a killed supervisor must not keep the next apply out). One host
supervises every job of a process; stopping one run stops that run alone. A killed host is a
killed supervisor: the next apply stops the command it left and runs the job again, and a new
host takes over. The host ends without collecting its objects (the applying process waits for
it to end).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.runtime import Detached, RunContext
from substratus.runtimes.local import LocalRuntime, launcher, runlock
from substratus.runtimes.local.job import stop_run, supervisor_of
from substratus.runtimes.local.process import ProcessRef
from substratus.runtimes.local.workdir import RunFiles

from .helpers import (
    PY,
    cancel_when,
    job_spec,
    local_build_spec,
    make_context,
    pending,
    record,
    request,
    wait_for,
)

GATED = """
import json, os, pathlib, time
content = pathlib.Path(os.environ["CONTENT_DIR"])
params = json.loads((content / "params.json").read_text())
with open(params["counter"], "a") as fh:
    fh.write("run\\n")
gate = pathlib.Path(params["gate"])
deadline = time.monotonic() + 120
while not gate.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
(content / "artifacts" / "out.txt").write_text("released" if gate.exists() else "timed out")
"""

FDS = """
import json, os, pathlib
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
content = pathlib.Path(os.environ["CONTENT_DIR"])
(content / "artifacts" / "fds.json").write_text(json.dumps(fds))
"""


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


@pytest.fixture
def scripts(runtime: LocalRuntime, tmp_path: Path) -> dict[str, Any]:
    """The outputs of a build of a context holding ``gated.py`` and ``fds.py``."""
    context = make_context(tmp_path / "scripts", {"gated.py": GATED, "fds.py": FDS})
    return runtime.apply(request("build", "scripts", local_build_spec(context)), RunContext())


def test_a_job_end_is_seen_without_polling(tmp_path: Path, built: dict[str, Any]) -> None:
    hourly = LocalRuntime(tmp_path / ".substratus", (tmp_path / "artifacts").as_uri(), 3600.0)
    req = request("dataset", "quick", job_spec({"name": "quick"}), inputs={"build": built})
    done: list[dict[str, Any]] = []
    worker = threading.Thread(target=lambda: done.append(hourly.apply(req, RunContext())))
    worker.start()
    worker.join(timeout=120)  # a poll every hour would still be waiting
    assert not worker.is_alive() and done
    assert Path(done[0]["artifacts_path"], "out.json").exists()


def test_the_end_of_an_adopted_job_is_seen_without_polling(
    runtime: LocalRuntime, scripts: dict[str, Any], tmp_path: Path
) -> None:
    """An apply that adopts a run another apply left running sees its end at once too (in
    another process, through the run's lock: ``test_job``'s kill -9 test)."""
    counter, gate = tmp_path / "count", tmp_path / "gate"
    req = _detached(runtime, scripts, "gated", {"counter": str(counter), "gate": str(gate)})
    wait_for(RunFiles(Path(runtime.intent(req)["run_dir"])).child.exists)  # its record is made
    hourly = LocalRuntime(runtime.workdir.root, runtime.store.url, 3600.0)
    adopt = dataclasses.replace(req, intent=hourly.intent(req))
    done: list[dict[str, Any]] = []
    worker = threading.Thread(target=lambda: done.append(hourly.apply(adopt, RunContext())))
    worker.start()
    gate.touch()
    worker.join(timeout=120)  # a poll every hour would still be waiting
    assert not worker.is_alive() and done
    assert Path(done[0]["artifacts_path"], "out.txt").read_text() == "released"
    assert runs(counter) == 1


def test_the_command_does_not_hold_the_run_lock(
    runtime: LocalRuntime, scripts: dict[str, Any]
) -> None:
    spec = job_spec({}, command=[PY, "fds.py"])
    out = runtime.apply(request("dataset", "fds", spec, inputs={"build": scripts}), RunContext())
    fds = json.loads(Path(out["artifacts_path"], "fds.json").read_text())
    lock = str(Path(out["run_dir"], "lock"))
    assert lock not in fds.values()
    assert Path(fds["1"]).name == "log.txt" and fds["0"] == os.devnull


def _gates(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """The run counter and the gate of ``gated.py``, and its params naming them."""
    counter, gate = tmp_path / "count", tmp_path / "gate"
    return counter, gate, {"counter": str(counter), "gate": str(gate)}


def _detached(runtime: LocalRuntime, scripts: dict[str, Any], name: str, params: Any) -> Any:
    """A gated job started and left running (its apply detached); its request."""
    req = request("dataset", name, job_spec(params, command=[PY, "gated.py"]))
    req = dataclasses.replace(req, inputs={"build": scripts})
    with pytest.raises(Detached):
        runtime.apply(req, cancel_when("running"))
    return req


def _record(runtime: LocalRuntime, req: Any, name: str) -> dict[str, Any]:
    data = json.loads(Path(runtime.intent(req)["run_dir"], name).read_text())
    assert isinstance(data, dict)
    return data


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def test_one_host_supervises_every_job_and_each_command_is_its_child(
    runtime: LocalRuntime, scripts: dict[str, Any], tmp_path: Path
) -> None:
    counter, gate, params = _gates(tmp_path)
    first = _detached(runtime, scripts, "one", params)
    second = _detached(runtime, scripts, "two", params)
    host = launcher.server_pid()
    assert host is not None
    wait_for(lambda: runs(counter) == 2)
    for req in (first, second):
        record = _record(runtime, req, "child.json")
        assert record["host"]["pid"] == host  # no supervisor.json: one file fewer per job
        assert not Path(runtime.intent(req)["run_dir"], "supervisor.json").exists()
        child = record["pid"]
        assert child != host and _parent(child) == host  # spawned by the host, not a fork
        assert os.getsid(child) == child  # a session of its own: stopping it spares the host

    gate.touch()
    for req in (first, second):
        out = runtime.apply(dataclasses.replace(req, intent=runtime.intent(req)), RunContext())
        assert Path(out["artifacts_path"], "out.txt").read_text() == "released"
    assert runs(counter) == 2  # adopted, not started again


def test_stopping_one_run_stops_it_alone(
    runtime: LocalRuntime, scripts: dict[str, Any], tmp_path: Path
) -> None:
    counter, gate, params = _gates(tmp_path)
    stopped = _detached(runtime, scripts, "stopped", params)
    kept = _detached(runtime, scripts, "kept", params)
    wait_for(lambda: runs(counter) == 2)
    host = launcher.server_pid()
    run = RunFiles(Path(runtime.intent(stopped)["run_dir"]))
    child = ProcessRef.from_json(_record(runtime, stopped, "child.json"))
    assert child is not None

    stop_run(run)
    assert not child.alive()
    assert run.exit_code.read_text().split("\n")[0] == "143"  # SIGTERM, recorded
    assert supervisor_of(run) is None  # the host lives on; this run is over
    assert launcher.server_pid() == host and host is not None and ProcessRef.of(host)

    gate.touch()
    out = runtime.apply(dataclasses.replace(kept, intent=runtime.intent(kept)), RunContext())
    assert Path(out["artifacts_path"], "out.txt").read_text() == "released"
    assert runs(counter) == 2  # the stopped run did not start again


def test_sigterm_to_the_host_stops_its_runs_records_them_and_ends_it(
    runtime: LocalRuntime, scripts: dict[str, Any], tmp_path: Path
) -> None:
    params = {"counter": str(tmp_path / "count"), "gate": str(tmp_path / "gate")}
    req = _detached(runtime, scripts, "gated", params)
    run = RunFiles(Path(runtime.intent(req)["run_dir"]))
    wait_for(run.child.exists)
    child = ProcessRef.from_json(_record(runtime, req, "child.json"))
    host = launcher.server_pid()
    assert host is not None and child is not None
    os.kill(host, signal.SIGTERM)
    wait_for(lambda: ProcessRef.of(host) is None)
    assert not child.alive()
    assert run.exit_code.read_text().split("\n")[0] == "143"


def test_a_killed_host_is_a_killed_supervisor_and_a_new_one_starts_the_next(
    runtime: LocalRuntime, scripts: dict[str, Any], tmp_path: Path
) -> None:
    counter, gate, params = _gates(tmp_path)
    req = _detached(runtime, scripts, "gated", params)
    wait_for(lambda: runs(counter) == 1)
    orphan = ProcessRef.from_json(_record(runtime, req, "child.json"))
    server = launcher.server_pid()
    assert server is not None and orphan is not None
    os.kill(server, signal.SIGKILL)
    lock = Path(runtime.intent(req)["run_dir"], "lock")
    wait_for(lambda: not runlock.held(lock))  # its last thread is gone (its leader a zombie)
    assert orphan.alive()  # the command goes on, unsupervised

    intent = runtime.intent(req)
    rec = record(req, {}, status="pending", pending=pending(req, intent))
    assert runtime.refresh({req.address: rec})[req.address].pending == "gone"
    gate.touch()
    out = runtime.apply(dataclasses.replace(req, intent=intent), RunContext())
    assert Path(out["artifacts_path"], "out.txt").read_text() == "released"
    assert not orphan.alive()  # stopped before the job ran again
    assert runs(counter) == 2
    assert launcher.server_pid() not in (None, server)


HOST_ENDS = """
import gc, socket
from substratus.runtimes.local import host
ours, theirs = socket.socketpair()
ours.shutdown(socket.SHUT_WR)  # no request: the host answers how many runs it still has
code = host.main(["--fd", str(theirs.fileno())])
print(code, ours.recv(64).decode().strip(), gc.get_freeze_count() > 0)
"""


def test_the_host_ends_with_the_collector_frozen() -> None:
    done = subprocess.run(
        [sys.executable, "-c", HOST_ENDS],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.split("\n")[0] == "0 runs 0 True", done.stdout + done.stderr
