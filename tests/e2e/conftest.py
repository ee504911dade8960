"""End-to-end fixtures: a copy of a configuration in a temp dir and the real CLI as a subprocess.

Every test runs ``python -m substratus`` for real (local runtime, file backend, real processes).
At teardown the project is destroyed and any process still running from its ``.substratus``
directory is killed, so no test leaks servers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The test jobs count their runs in $RUNS_LOG: the operator passes it to every workload (a
# workload sees nothing else of the operator's environment, runtimes.contract).
TEST_ENV = {"NO_COLOR": "1", "SUBSTRATUS_PASS_ENV": "RUNS_LOG,STATE_DIR"}
QUICKSTART = ROOT / "examples" / "quickstart"


@dataclass
class Project:
    dir: Path

    def run(
        self,
        *args: str,
        check: int | None = 0,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "substratus", *args],
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **TEST_ENV, **(env or {})},
        )
        if check is not None:
            assert proc.returncode == check, (
                f"substratus {' '.join(args)} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "substratus", *args],
            cwd=self.dir,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **TEST_ENV, **(env or {})},
            start_new_session=True,
        )

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.dir / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new))

    @property
    def state_file(self) -> Path:
        return self.dir / ".substratus" / "state" / "default.json"


def leftovers(root: Path) -> list[int]:
    """The processes (but this one) whose command line or cwd points into ``root``."""
    marker = str(root)
    found = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(pid_dir / "cwd")
        except OSError:
            continue
        if marker in cmdline or cwd.startswith(marker):
            found.append(int(pid_dir.name))
    return found


def kill_leftovers(root: Path) -> None:
    """Kill every process whose command line or cwd points into ``root``."""
    for pid in leftovers(root):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    target = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, target, ignore=shutil.ignore_patterns(".substratus"))
    p = Project(target)
    yield p
    if p.state_file.exists():
        p.run("destroy", "--auto-approve", "--no-lock", check=None, timeout=60)
    kill_leftovers(tmp_path)


SLOW_PIPELINE = """\
kind: Dataset
name: data
spec:
  container: {local: {path: ./app}, command: ["python3", "job.py"]}
  loader: {params: {sleep: 0}}
---
kind: Model
name: trained
spec:
  container: {local: {path: ./app}, command: ["python3", "job.py"]}
  trainer:
    dataset: data
    params: {sleep: SLEEP}
---
kind: ModelServer
name: api
spec:
  container: {local: {path: ./app}, command: ["python3", "serve.py"]}
  model: trained
"""

JOB = """\
import json, os, pathlib, sys, time
content = pathlib.Path(os.environ.get("CONTENT_DIR", "/content"))
params = json.loads((content / "params.json").read_text())
runs = pathlib.Path(__file__).resolve().parent.parent / "runs.log"
with open(os.environ["RUNS_LOG"], "a") as fh:
    fh.write(os.environ.get("PARAM_SLEEP", "?") + "\\n")
print("working", flush=True)
if params.get("fail"):
    print("boom: the trainer ran out of patience", file=sys.stderr)
    sys.exit(3)
if params.get("gate"):  # held until the test creates that file (120 s at most), not slept
    deadline = time.monotonic() + 120
    while not os.path.exists(params["gate"]) and time.monotonic() < deadline:
        time.sleep(0.05)
else:
    time.sleep(float(params.get("sleep", 0)))
(content / "artifacts" / "out.txt").write_text("ok")
"""

SERVE = """\
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), H).serve_forever()
"""


@pytest.fixture
def slow_project(tmp_path: Path) -> Iterator[Project]:
    """A Dataset → trained Model (sleeping ``SLEEP`` seconds) → ModelServer pipeline. Each job
    appends its ``sleep`` param to ``$RUNS_LOG`` when it starts; with a ``gate`` param (a path)
    it waits until that file exists instead of sleeping, so a test decides when it ends."""
    root = tmp_path / "slow"
    (root / "app").mkdir(parents=True)
    (root / "app" / "job.py").write_text(JOB)
    (root / "app" / "serve.py").write_text(SERVE)
    (root / "substratus.yaml").write_text(SLOW_PIPELINE.replace("SLEEP", "0"))
    os.environ["RUNS_LOG"] = str(tmp_path / "runs.log")
    p = Project(root)
    yield p
    if p.state_file.exists():
        p.run("destroy", "--auto-approve", "--no-lock", check=None, timeout=60)
    kill_leftovers(tmp_path)
