"""Retries and checkpoints on the local runtime, through the CLI (issue #15): a failed run starts
again into the same version with its ``artifacts/`` kept (``SUBSTRATUS_ATTEMPT`` 1, 2, …), up
to ``spec.retries`` times; the restarts are events and recorded attempts; a change of
``retries`` runs nothing; ``kill -9`` of the CLI leaves the retrying job going, and the next
apply adopts it. Attempts are counted by the job itself (a line per start in ``$RUNS_LOG``,
outside its content directory: ``tests.e2e.counting``), never read from our output."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Project, kill_leftovers
from tests.e2e.counting import state
from tests.support.waiting import wait_for

# Attempt n < fail_until writes the checkpoint "n" and exits 3 (held first, with a ``gate``
# param, until that file exists); a later attempt needs the checkpoint of the one before and
# writes out.txt from it.
JOB = """\
import json, os, pathlib, sys, time
content = pathlib.Path(os.environ["CONTENT_DIR"])
params = json.loads((content / "params.json").read_text())
attempt = int(os.environ["SUBSTRATUS_ATTEMPT"])
with open(os.environ["RUNS_LOG"], "a") as fh:
    fh.write(f"{params['name']}:{attempt}\\n")
checkpoint = content / "artifacts" / "checkpoint.txt"
if attempt < params["fail_until"]:
    if attempt > 1:
        assert checkpoint.read_text() == str(attempt - 1), "lost the checkpoint"
    checkpoint.write_text(str(attempt))
    deadline = time.monotonic() + 120
    while params.get("gate") and not os.path.exists(params["gate"]):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    print(f"attempt {attempt} fails", file=sys.stderr)
    sys.exit(3)
resumed = checkpoint.read_text() if checkpoint.exists() else "nothing"
(content / "artifacts" / "out.txt").write_text(f"resumed from {resumed}")
"""

CONFIG = """\
kind: Dataset
name: data
spec:
  retries: RETRIES
  container: {local: {path: ./app}, command: ["python3", "job.py"]}
  loader: {params: {name: data, fail_until: FAIL_UNTIL}}
"""


@pytest.fixture
def retrying(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    root = tmp_path / "proj"
    (root / "app").mkdir(parents=True)
    (root / "app" / "job.py").write_text(JOB)
    monkeypatch.setenv("RUNS_LOG", str(tmp_path / "runs.log"))
    p = Project(root)
    yield p
    if (root / ".substratus").exists():
        p.run("destroy", "--auto-approve", "--no-lock", check=None)
    kill_leftovers(tmp_path)


def _configure(p: Project, retries: int, fail_until: int, gate: Path | None = None) -> None:
    text = CONFIG.replace("RETRIES", str(retries)).replace("FAIL_UNTIL", str(fail_until))
    if gate is not None:
        text = text.replace("}}", f', gate: "{gate}"}}}}')
    (p.dir / "substratus.yaml").write_text(text)


def _starts() -> list[str]:
    log = Path(os.environ["RUNS_LOG"])
    return log.read_text().split() if log.exists() else []


def _last_run(p: Project) -> dict[str, Any]:
    return dict(state(p.dir)["resources"]["dataset.data"]["last_run"])


def test_a_failed_attempt_starts_again_and_resumes_from_its_checkpoint(retrying: Project) -> None:
    p = retrying
    _configure(p, retries=2, fail_until=2)
    out = p.run("apply", "--auto-approve", "--json")
    assert _starts() == ["data:1", "data:2"]  # attempt 1 failed, attempt 2 succeeded
    events = [json.loads(line) for line in out.stdout.splitlines()]
    restarts = [e for e in events if e["type"] == "apply_restart"]
    assert len(restarts) == 1
    assert restarts[0]["address"] == "dataset.data"
    assert (restarts[0]["attempt"], restarts[0]["next_attempt"]) == (1, 2)
    assert restarts[0]["reason"] == "exit code 3" and restarts[0]["counted"] is True
    artifacts = Path(state(p.dir)["resources"]["dataset.data"]["outputs"]["artifacts_path"])
    assert (artifacts / "out.txt").read_text() == "resumed from 1"  # same version directory
    run = _last_run(p)
    assert run["outcome"] == "succeeded" and run["attempts"] == 2
    assert run["failed_attempts"] == [{"attempt": 1, "reason": "exit code 3"}]
    assert "No changes." in p.run("plan").stdout
    shown = json.loads(p.run("state", "show", "dataset.data").stdout)
    assert shown["dataset.data"]["last_run"]["attempts"] == 2


def test_retries_used_up_fail_and_name_the_attempts(retrying: Project) -> None:
    p = retrying
    _configure(p, retries=1, fail_until=9)
    out = p.run("apply", "--auto-approve", check=1)
    assert _starts() == ["data:1", "data:2"]  # the first run and one retry, no more
    assert "dataset.data: attempt 1 failed (exit code 3); attempt 2 starts" in out.stdout
    assert "dataset job exited with code 3 (attempt 2 of 2)" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    run = _last_run(p)
    assert run["outcome"] == "failed" and run["attempts"] == 2
    assert [a["attempt"] for a in run["failed_attempts"]] == [1, 2]


def test_without_retries_a_failed_run_does_not_start_again(retrying: Project) -> None:
    p = retrying
    _configure(p, retries=0, fail_until=2)
    out = p.run("apply", "--auto-approve", check=1)
    assert _starts() == ["data:1"]
    assert "dataset job exited with code 3" in out.stdout + out.stderr
    assert "starts" not in out.stdout and "(attempt" not in out.stdout + out.stderr
    assert "attempts" not in _last_run(p)


def test_changing_retries_runs_nothing(retrying: Project) -> None:
    p = retrying
    _configure(p, retries=0, fail_until=1)
    p.run("apply", "--auto-approve")
    assert _starts() == ["data:1"]
    before = state(p.dir)["resources"]["dataset.data"]
    _configure(p, retries=3, fail_until=1)
    plan = p.run("plan", "--detailed-exitcode", check=2)
    assert "record only: nothing runs" in plan.stdout
    assert "+ retries = 3" in plan.stdout
    p.run("apply", "--auto-approve")
    assert _starts() == ["data:1"]  # counted: it did not run again
    after = state(p.dir)["resources"]["dataset.data"]
    assert after["digest"] == before["digest"] and after["spec"]["retries"] == 3
    assert "No changes." in p.run("plan").stdout


def test_kill_9_of_the_cli_leaves_the_retrying_job_going_and_the_next_apply_adopts_it(
    retrying: Project, tmp_path: Path
) -> None:
    p = retrying
    gate = tmp_path / "release"
    _configure(p, retries=2, fail_until=2, gate=gate)
    proc = p.popen("apply", "--auto-approve")
    wait_for(lambda: _starts() == ["data:1"], "attempt 1 to start")
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI dies; the supervisor goes on
    proc.wait(timeout=60)
    gate.touch()  # attempt 1 fails now, and attempt 2 starts without any CLI
    wait_for(lambda: _starts() == ["data:1", "data:2"], "attempt 2 to start")
    out = p.run("apply", "--auto-approve")
    assert "interrupted" in out.stdout
    assert _starts() == ["data:1", "data:2"]  # adopted: neither run nor attempt again
    run = _last_run(p)
    assert run["outcome"] == "succeeded" and run["attempts"] == 2
    assert run["failed_attempts"] == [{"attempt": 1, "reason": "exit code 3"}]
    artifacts = Path(state(p.dir)["resources"]["dataset.data"]["outputs"]["artifacts_path"])
    assert (artifacts / "out.txt").read_text() == "resumed from 1"
    assert "No changes." in p.run("plan").stdout
