"""Saved plans, staleness, locking, crash recovery, drift and failure containment, end to end."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from substratus.state.local import FileBackend
from tests.e2e.conftest import Project, kill_leftovers
from tests.e2e.counting import PIPELINE, make_pipeline, runs


def _backend(project: Project) -> FileBackend:
    return FileBackend(project.state_file.parent)


def _state(project: Project) -> dict[str, Any]:
    """The stored state as any reader sees it: the base file with its journal replayed."""
    state, _ = _backend(project).read()
    return {} if state is None else state.model_dump(mode="json", exclude_none=True)


def _wait_for(predicate: Callable[[], bool], timeout: float = 120.0) -> None:
    """Until ``predicate()`` holds (checked every 50 ms), failing after ``timeout`` seconds: a
    bound for a loaded machine, not an expectation."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _hold_trainer(project: Project) -> Path:
    """Make the trainer (``3`` in the runs log) wait until the returned file exists, so that
    it is still running whenever the test acts, however slowly the machine runs."""
    gate = project.dir.parent / "release-trainer"
    project.edit(
        "substratus.yaml",
        "params: {sleep: 0}\n---\nkind: ModelServer",
        f'params: {{sleep: 3, gate: "{gate}"}}\n---\nkind: ModelServer',
    )
    return gate


def _trainer_running(project: Project) -> bool:
    """The apply recorded the trainer's run as pending, and the trainer itself has started."""
    if not project.state_file.exists():
        return False
    if "pending" not in _state(project)["resources"].get("model.trained", {}):
        return False
    log = Path(os.environ["RUNS_LOG"])
    return log.exists() and "3" in log.read_text().split()


def test_saved_plan_applies_exactly_and_refuses_when_stale(slow_project: Project) -> None:
    p = slow_project
    p.run("plan", "--out", "first.json")
    p.run("plan", "--out", "second.json")
    applied = p.run("apply", "first.json")
    assert "Apply complete! Resources: 4 added" in applied.stdout
    serial = _state(p)["serial"]

    mixed = p.run("apply", "second.json", "--target", "dataset.data", check=1)
    assert "--target cannot be used with a saved plan" in mixed.stderr
    stale = p.run("apply", "second.json", check=1)
    assert "Saved plan is stale" in stale.stderr
    assert "Traceback" not in stale.stderr
    assert _state(p)["serial"] == serial  # nothing changed

    p.edit("substratus.yaml", "sleep: 0}}", "sleep: 0, extra: 1}}")
    p.run("plan", "--out", "third.json", check=0)
    p.edit("substratus.yaml", "extra: 1", "extra: 2")
    changed = p.run("apply", "third.json", check=1)
    assert "the configuration changed" in changed.stderr
    assert _state(p)["serial"] == serial


def test_second_apply_fails_at_once_while_the_lock_is_held(slow_project: Project) -> None:
    p = slow_project
    gate = _hold_trainer(p)  # the first apply holds the lock until the test releases it
    first = p.popen("apply", "--auto-approve")
    lock = p.dir / ".substratus" / "state" / "default.lock"
    _wait_for(lock.exists)
    before = _backend(p).read()[1]
    second = p.run("apply", "--auto-approve", check=1)
    # at once: it did not wait for the lock, whose holder cannot finish before the release
    assert first.poll() is None and lock.exists()
    err = second.stderr
    assert "Error acquiring the state lock" in err
    holder = json.loads(lock.read_text())
    assert f"substratus force-unlock {holder['id']}" in err
    assert "Who:" in err and "Created:" in err and "apply" in err
    assert "Traceback" not in err
    gate.touch()
    _out, errs = first.communicate(timeout=120)
    assert first.returncode == 0, errs
    assert not lock.exists()
    assert before is None or _backend(p).read()[1] != before  # only the first apply wrote


def test_kill_9_mid_apply_loses_nothing_and_the_next_run_adopts(slow_project: Project) -> None:
    p = slow_project
    gate = _hold_trainer(p)
    proc = p.popen("apply", "--auto-approve")
    _wait_for(lambda: _trainer_running(p))
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI dies; the job keeps running detached
    proc.wait(timeout=60)
    state = _state(p)
    assert state["resources"]["dataset.data"]["status"] == "ready"  # completed work is kept
    assert "pending" in state["resources"]["model.trained"]

    lock = p.dir / ".substratus" / "state" / "default.lock"
    holder = json.loads(lock.read_text())
    assert holder["pid"] == proc.pid
    plan = p.run("plan")  # the lock of the killed CLI, gone from this host, is taken over
    assert f"Taking over the state lock of process {proc.pid} on this host, which is gone" in (
        plan.stderr
    )
    assert not lock.exists()
    assert "interrupted" in plan.stdout
    gate.touch()  # the next apply adopts the trainer and waits for it
    p.run("apply", "--auto-approve")
    assert "No changes." in p.run("plan", "--detailed-exitcode").stdout
    runs = Path(os.environ["RUNS_LOG"]).read_text().split()
    assert runs.count("3") == 1, runs  # the trainer ran once: adopted, not restarted


def test_drift_is_shown_and_repaired(slow_project: Project) -> None:
    p = slow_project
    p.run("apply", "--auto-approve")
    state = _state(p)
    pid = state["resources"]["modelserver.api"]["outputs"]["pid"]
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    _wait_for(
        lambda: (
            not Path(f"/proc/{pid}").exists()
            or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
        )
    )
    artifacts = Path(state["resources"]["dataset.data"]["outputs"]["artifacts_path"])
    os.system(f"chmod -R u+w {artifacts} && rm -rf {artifacts}")

    trusting = p.run("plan", "--no-refresh", "--detailed-exitcode")  # trusts the state
    assert "No changes." in trusting.stdout
    plan = p.run("plan", "--detailed-exitcode", check=2)
    assert "Objects have changed outside of substratus" in plan.stdout
    assert "# modelserver.api has been deleted" in plan.stdout
    assert "# dataset.data has been deleted" in plan.stdout
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in plan.stdout

    p.run("apply", "--auto-approve")
    repaired = Path(_state(p)["resources"]["dataset.data"]["outputs"]["artifacts_path"])
    assert repaired.is_dir() and repaired != artifacts  # loaded again, into a new version
    assert "No changes." in p.run("plan", "--detailed-exitcode").stdout


def test_failure_stops_only_dependents_and_shows_the_log(slow_project: Project) -> None:
    p = slow_project
    p.edit(
        "substratus.yaml",
        "params: {sleep: 0}\n---\nkind: ModelServer",
        "params: {sleep: 0, fail: true}\n---\nkind: ModelServer",
    )
    out = p.run("apply", "--auto-approve", check=1)
    assert "boom: the trainer ran out of patience" in out.stderr
    assert "modelserver.api: not applied: upstream model.trained failed" in out.stdout
    state = _state(p)
    assert state["resources"]["dataset.data"]["status"] == "ready"
    trained = state["resources"]["model.trained"]  # tainted: no version, replaced next time
    assert trained["status"] == "tainted" and not trained.get("digest")
    assert "Traceback" not in out.stderr
    plan = p.run("plan").stdout
    assert "model.trained is tainted: its first apply failed" in plan

    p.edit("substratus.yaml", "fail: true", "fail: false")
    p.run("apply", "--auto-approve")
    assert "No changes." in p.run("plan", "--detailed-exitcode").stdout


def test_ctrl_c_detaches_cleanly_and_releases_the_lock(slow_project: Project) -> None:
    p = slow_project
    gate = _hold_trainer(p)  # still running when Ctrl-C arrives, however late that is
    proc = p.popen("apply", "--auto-approve")
    _wait_for(lambda: _trainer_running(p))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    assert "Interrupted" in err
    assert "Traceback" not in err
    assert not (p.dir / ".substratus" / "state" / "default.lock").exists()
    gate.touch()  # the next apply adopts the detached trainer and waits for it
    p.run("apply", "--auto-approve")
    runs = Path(os.environ["RUNS_LOG"]).read_text().split()
    assert runs.count("3") == 1, runs


BUMP = """\
import json, os, pathlib
from substratus.state.local import FileBackend
content = pathlib.Path(os.environ["CONTENT_DIR"])
params = json.loads((content / "params.json").read_text())
with open(os.environ["RUNS_LOG"], "a") as fh:
    fh.write(params["name"] + "\\n")
backend = FileBackend(os.environ["STATE_DIR"])  # another process writes the state meanwhile
state, token = backend.read()
state.serial += 1
backend.write(state, token, [])
(content / "artifacts" / "out.txt").write_text("ok")
"""


def test_a_state_write_conflict_mid_apply_stops_the_walk(tmp_path: Path) -> None:
    job, bump = (
        'command: ["python3", "job.py"]}\n  loader',
        'command: ["python3", "bump.py"]}\n  loader',
    )
    config = PIPELINE.replace(job, bump)
    assert config != PIPELINE
    project = Project(make_pipeline(tmp_path / "conflict", config))
    (project.dir / "app" / "bump.py").write_text(BUMP)
    log = tmp_path / "runs.log"
    env = {"RUNS_LOG": str(log), "STATE_DIR": str(project.dir / ".substratus" / "state")}
    try:
        out = project.run("apply", "--auto-approve", check=1, env=env)
        assert runs(log) == {"data": 1}  # nothing started after the conflict
        assert "state write conflict: the state" in out.stderr
        assert "was changed by another process" in out.stderr
        assert "unexpected error" not in out.stdout + out.stderr
        assert "Apply complete" not in out.stdout
        assert _backend(project).current_lock() is None
    finally:
        project.run("destroy", "--auto-approve", "--no-lock", check=None, timeout=60, env=env)
        kill_leftovers(tmp_path)
