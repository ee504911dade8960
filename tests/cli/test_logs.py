"""``substratus logs`` on the local runtime, through the real CLI and real job processes.

Runs are counted (each job appends a line to ``$RUNS_LOG``, outside its content directory), so
"logs runs nothing" is a count; what ``logs`` prints is the job's own output. The follow test
holds a job open on a gate file the test creates, so the line after the gate is written after
``logs --follow`` started; every wait is bounded and ends as soon as its condition holds.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import TEST_ENV, kill_leftovers
from tests.e2e.counting import runs
from tests.support.waiting import wait_for

BOUND = 120.0  # an upper bound for a loaded machine, never an expectation

JOB = """\
import os, pathlib, time
for i in range(1, 6):
    print(f"line {i}", flush=True)
with open(os.environ["RUNS_LOG"], "a") as fh:
    fh.write("data\\n")
gate = os.environ.get("PARAM_GATE")
if gate:
    deadline = time.monotonic() + 120
    while not pathlib.Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    print("after the gate", flush=True)
(pathlib.Path(os.environ["CONTENT_DIR"]) / "artifacts" / "out.txt").write_text("done")
"""

CONFIG = """\
kind: Dataset
name: data
spec:
  container: {local: {path: ./app}, command: ["python3", "job.py"]}
  loader: {params: PARAMS}
"""


class Cli:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs_log = root.parent / "runs.log"
        self.env = {**os.environ, **TEST_ENV, "RUNS_LOG": str(self.runs_log)}

    def run(self, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "substratus", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=BOUND,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        if check is not None:
            assert proc.returncode == check, f"{args}: {proc.stdout}\n{proc.stderr}"
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "substratus", *args],
            cwd=self.root,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
        )


def project(tmp_path: Path, params: str = "{name: data}") -> Cli:
    root = tmp_path / "project"
    (root / "app").mkdir(parents=True)
    (root / "app" / "job.py").write_text(JOB)
    (root / "substratus.yaml").write_text(CONFIG.replace("PARAMS", params))
    return Cli(root)


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    kill_leftovers(tmp_path)


def lines_of(stream: object) -> queue.Queue[str | None]:
    """The lines a pipe yields, read on a thread (None at its end), so a test can wait for
    one with a bound."""
    found: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:  # type: ignore[attr-defined]
            found.put(line.rstrip("\n"))
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    return found


def test_logs_prints_the_last_run_and_its_tail(tmp_path: Path) -> None:
    cli = project(tmp_path)
    cli.run("apply", "--auto-approve")
    assert runs(cli.runs_log) == {"data": 1}

    shown = cli.run("logs", "dataset.data")
    assert shown.stdout.splitlines() == [f"line {i}" for i in range(1, 6)]
    tail = cli.run("logs", "dataset.data", "--tail", "2")
    assert tail.stdout.splitlines() == ["line 4", "line 5"]
    assert cli.run("logs", "default/dataset.data", "--tail", "0").stdout == ""
    assert runs(cli.runs_log) == {"data": 1}  # reading a log runs nothing


def test_logs_without_a_run_or_with_a_bad_address_says_so(tmp_path: Path) -> None:
    cli = project(tmp_path)
    never = cli.run("logs", "dataset.data", check=1)
    assert "dataset.data has not run yet" in never.stderr
    assert "substratus apply" in never.stderr
    assert "Traceback" not in never.stderr

    bad = cli.run("logs", "data", check=1)
    assert "Invalid address" in bad.stderr
    assert "is not a resource address" in bad.stderr
    assert runs(cli.runs_log) == {}


def test_logs_follow_streams_a_running_job_while_apply_holds_the_lock(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    cli = project(tmp_path, f"{{name: data, gate: {gate}}}")
    apply = cli.popen("apply", "--auto-approve")
    try:
        wait_for(lambda: runs(cli.runs_log) == {"data": 1}, "the job to start", BOUND)
        lock = cli.root / ".substratus" / "state" / "default.lock"
        assert lock.exists(), "apply holds the state lock while its job runs"

        now = cli.run("logs", "dataset.data")  # while the lock is held
        assert now.stdout.splitlines() == [f"line {i}" for i in range(1, 6)]

        follow = cli.popen("logs", "dataset.data", "--follow", "--tail", "1")
        out = lines_of(follow.stdout)
        assert out.get(timeout=BOUND) == "line 5"
        gate.touch()  # the job writes its last line now, after `logs --follow` started
        assert out.get(timeout=BOUND) == "after the gate"
        assert out.get(timeout=BOUND) is None  # it ended with the job
        assert follow.wait(timeout=BOUND) == 0, follow.stderr.read() if follow.stderr else ""
        assert apply.wait(timeout=BOUND) == 0
    finally:
        gate.touch()
        if apply.poll() is None:
            apply.kill()
    assert runs(cli.runs_log) == {"data": 1}


def test_logs_shows_a_failed_run_after_the_one_that_succeeded(tmp_path: Path) -> None:
    cli = project(tmp_path)
    cli.run("apply", "--auto-approve")
    job = cli.root / "app" / "job.py"
    job.write_text(JOB.replace('print(f"line {i}", flush=True)', 'print(f"again {i}")') + "1/0\n")
    cli.run("apply", "--auto-approve", check=1)
    assert runs(cli.runs_log) == {"data": 2}

    shown = cli.run("logs", "dataset.data")
    assert shown.stdout.splitlines()[:5] == [f"again {i}" for i in range(1, 6)]
    assert "ZeroDivisionError" in shown.stdout  # the failed run's own output, not the first's


SERVER = """\
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, fmt, *args):
        print("request " + self.path, flush=True)
print("serving", flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""

SERVED = """\
kind: Model
name: base
spec:
  url: ./weights
---
kind: ModelServer
name: api
spec:
  container: {local: {path: ./app}, command: ["python3", "serve.py"]}
  model: base
"""


def test_logs_follow_of_a_server_ends_when_its_process_stops(tmp_path: Path) -> None:
    cli = project(tmp_path)
    (cli.root / "app" / "serve.py").write_text(SERVER)
    (cli.root / "weights").mkdir()
    (cli.root / "substratus.yaml").write_text(SERVED)
    cli.run("apply", "--auto-approve")
    assert "serving" in cli.run("logs", "modelserver.api").stdout.splitlines()
    location = cli.run("logs", "model.base", check=1)
    assert "runs no workload" in location.stderr

    follow = cli.popen("logs", "modelserver.api", "--follow")
    out = lines_of(follow.stdout)
    try:
        assert next_line(out, "serving") == "serving"
        url = json.loads(cli.run("output", "--json").stdout)["modelserver.api"]["endpoint"]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        assert opener.open(url + "/hello", timeout=BOUND).read() == b"ok"
        # written after `logs` started (health checks print "request /" too)
        assert next_line(out, "request /hello") == "request /hello"
        cli.run("destroy", "--auto-approve")  # stops the server: the follow ends with it
        assert next_line(out, None) is None
        assert follow.wait(timeout=BOUND) == 0
    finally:
        if follow.poll() is None:
            follow.kill()


def next_line(out: queue.Queue[str | None], wanted: str | None) -> str | None:
    """The first line equal to ``wanted`` (or the end: None), skipping others."""
    while True:
        line = out.get(timeout=BOUND)
        if line == wanted or line is None:
            return line


@pytest.mark.parametrize(
    "text", ["", "a\n", "a\nb\nc\n", "a\nb\nc", "\n\nx\n\n", "ab\ncd\nef\ngh\n"]
)
def test_tail_offset_reads_backwards_across_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    from substratus.runtimes.local import logs as local_logs

    monkeypatch.setattr(local_logs, "BLOCK", 3)  # lines cross block boundaries
    path = tmp_path / "log.txt"
    path.write_bytes(text.encode())
    lines = text.splitlines(keepends=True)
    for n in range(len(lines) + 2):
        start = local_logs.tail_offset(path, n)
        assert text[start:] == "".join(lines[max(0, len(lines) - n) :] if n else []), (text, n)
