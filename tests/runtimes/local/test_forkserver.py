"""Job supervisors started through the fork server: what it must not change, and what it adds.

A job's end is seen when its supervisor exits (a pidfd), not by polling: a runtime whose poll
interval is an hour still finishes a job at once. The command never holds the run's lock (a
command left behind by a killed supervisor must not keep the next apply out). Jobs outlive
the fork server that forked them, and a new fork server takes over for the next job.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.runtime import Detached, RunContext
from substratus.runtimes.local import LocalRuntime, launcher
from substratus.runtimes.local.process import ProcessRef

from .helpers import (
    PY,
    cancel_when,
    job_spec,
    local_build_spec,
    make_context,
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


def test_the_command_does_not_hold_the_run_lock(
    runtime: LocalRuntime, scripts: dict[str, Any]
) -> None:
    spec = job_spec({}, command=[PY, "fds.py"])
    out = runtime.apply(request("dataset", "fds", spec, inputs={"build": scripts}), RunContext())
    fds = json.loads(Path(out["artifacts_path"], "fds.json").read_text())
    lock = str(Path(out["run_dir"], "lock"))
    assert lock not in fds.values()
    assert Path(fds["1"]).name == "log.txt" and fds["0"] == os.devnull


def test_jobs_outlive_the_fork_server_and_a_new_one_starts_the_next(
    runtime: LocalRuntime, scripts: dict[str, Any], tmp_path: Path
) -> None:
    counter, gate = tmp_path / "count", tmp_path / "gate"
    params = {"counter": str(counter), "gate": str(gate)}
    req = request("dataset", "gated", job_spec(params, command=[PY, "gated.py"]))
    req = dataclasses.replace(req, inputs={"build": scripts})
    with pytest.raises(Detached):
        runtime.apply(req, cancel_when("running"))
    server = launcher.server_pid()
    assert server is not None
    os.kill(server, signal.SIGKILL)
    wait_for(lambda: ProcessRef.of(server) is None)  # gone (a zombie counts as gone)

    gate.touch()
    out = runtime.apply(dataclasses.replace(req, intent=runtime.intent(req)), RunContext())
    assert Path(out["artifacts_path"], "out.txt").read_text() == "released"
    assert runs(counter) == 1  # adopted, not started again

    again = request("dataset", "after", job_spec(params, command=[PY, "gated.py"]))
    runtime.apply(dataclasses.replace(again, inputs={"build": scripts}), RunContext())
    assert runs(counter) == 2
    assert launcher.server_pid() not in (None, server)
