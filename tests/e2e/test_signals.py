"""Signals and locks (issue #13), through the real CLI.

- Ctrl-C at any point of start-up, or while waiting for the lock, is one line and exit 130,
  never a traceback, and leaves no lock of its own.
- SIGTERM and SIGHUP during an apply stop it as Ctrl-C does (running work detached and
  recorded, the lock released), also when the CLI was started with SIGINT ignored.
- A lock left by a process of this host that is gone is taken over, with a notice.
- A state that cannot be written (read-only file system, a compare-and-swap conflict) is one
  message, printed once, with what to do.

Every wait is on a condition with a deadline (a shared library mapped by the CLI, a line it
prints, a record in the state), never a fixed sleep.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from substratus.engine.backend import LockInfo
from substratus.state.local import FileBackend
from tests.e2e.conftest import Project, kill_leftovers
from tests.e2e.counting import PIPELINE, make_pipeline, runs, state
from tests.e2e.test_disk_full import MOUNT, unshare_argv
from tests.e2e.test_safety import BUMP
from tests.support.ci import unavailable
from tests.support.waiting import wait_for

FORK = multiprocessing.get_context("fork")


def popen(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "substratus", *args],
        cwd=root,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        start_new_session=True,
    )


def mapped(pid: int, library: str) -> bool:
    """Whether process ``pid`` has loaded the shared library ``library`` (its imports got that
    far), or is gone (then the caller finds out from its exit)."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return True


def no_traceback(err: str) -> None:
    for bad in ("Traceback", "This is a bug", "unexpected"):
        assert bad not in err, err


def lock_path(root: Path) -> Path:
    return root / ".substratus" / "state" / "default.lock"


# -- Ctrl-C during start-up ----------------------------------------------------------------------

# Shared libraries the CLI maps one after another while it loads its modules (the standard
# library's datetime, pydantic, PyYAML, the terminal): a SIGINT right after each lands at a
# different point of start-up.
STARTUP = ["_datetime", "_pydantic_core", "_yaml", "termios"]


@pytest.mark.parametrize("library", STARTUP)
def test_ctrl_c_during_start_up_is_one_line(tmp_path: Path, library: str) -> None:
    root = make_pipeline(tmp_path / "project")
    backend = FileBackend(root / ".substratus" / "state")
    # held by this process: the plan cannot finish before the signal, however fast it starts
    mine = backend.lock(LockInfo(operation="apply"))
    proc = popen(root, "plan", "--lock-timeout", "5m")
    wait_for(lambda: mapped(proc.pid, library), f"the CLI to load {library}", interval=0.002)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    said = [line for line in err.splitlines() if not line.startswith("Acquiring state lock")]
    assert "\n".join(said).strip() == "Interrupted.", err
    current = backend.current_lock()
    assert current is not None and current.id == mine  # its own lock never taken; ours kept
    backend.unlock(mine)


def test_ctrl_c_while_waiting_for_the_lock_is_one_line(tmp_path: Path) -> None:
    root = make_pipeline(tmp_path / "project")
    backend = FileBackend(root / ".substratus" / "state")
    mine = backend.lock(LockInfo(operation="apply"))  # held by this (live) process
    proc = popen(root, "plan", "--lock-timeout", "5m")
    assert proc.stderr is not None
    first = wait_for(proc.stderr.readline, "the CLI to wait for the lock", timeout=60)
    assert first.startswith("Acquiring state lock."), first
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert err.strip() == "Interrupted.", err
    current = backend.current_lock()
    assert current is not None and current.id == mine  # its own lock never taken; ours kept
    backend.unlock(mine)


# -- SIGTERM / SIGHUP during apply ---------------------------------------------------------------


def _trainer_running(p: Project) -> bool:
    """The trainer is recorded as started and its process has begun (it logs ``3``)."""
    if not p.state_file.exists():
        return False
    if "pending" not in state(p.dir)["resources"].get("model.trained", {}):
        return False
    log = Path(os.environ["RUNS_LOG"])
    return log.exists() and "3" in log.read_text().split()


IGNORING_SIGINT = ["sh", "-c", 'trap "" INT; exec "$@"', "sh"]  # runs "$@" with SIGINT ignored


@pytest.mark.parametrize(
    ("sig", "ignore_sigint"),
    [(signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGTERM, True)],
    ids=["SIGTERM", "SIGHUP", "SIGTERM-with-SIGINT-ignored"],
)
def test_sigterm_and_sighup_during_apply_stop_it_like_ctrl_c(
    slow_project: Project, sig: signal.Signals, ignore_sigint: bool
) -> None:
    p = slow_project
    gate = p.dir.parent / "release-trainer"  # the trainer runs until the test opens it
    p.edit(
        "substratus.yaml",
        "params: {sleep: 0}\n---\nkind: ModelServer",
        f'params: {{sleep: 3, gate: "{gate}"}}\n---\nkind: ModelServer',
    )
    if ignore_sigint:  # started in the background by a script: SIGINT inherited as ignored
        proc = subprocess.Popen(
            [*IGNORING_SIGINT, sys.executable, "-m", "substratus", "apply", "--auto-approve"],
            cwd=p.dir,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"},
            start_new_session=True,
        )
    else:
        proc = p.popen("apply", "--auto-approve")
    wait_for(lambda: _trainer_running(p), "the trainer to start", timeout=120, interval=0.05)
    if ignore_sigint:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        ignored = int(
            next(x for x in status.splitlines() if x.startswith("SigIgn:")).split()[1], 16
        )
        assert ignored & (1 << (signal.SIGINT - 1)), "SIGINT should be ignored in this case"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    assert f"Stopped by {sig.name}: nothing new was started" in err, err
    no_traceback(err)
    assert "model.trained: Still running; detached" in out or "detached" in out, out
    assert not lock_path(p.dir).exists()
    recorded = state(p.dir)["resources"]
    assert recorded["dataset.data"]["status"] == "ready"
    assert "pending" in recorded["model.trained"]  # detached and recorded: adopted next time
    gate.touch()  # the next apply adopts the detached trainer and waits for it
    p.run("apply", "--auto-approve")
    ran = Path(os.environ["RUNS_LOG"]).read_text().split()
    assert ran.count("3") == 1, ran  # the trainer ran once: adopted, not started again


# -- a lock whose holder is gone -----------------------------------------------------------------


def _lock_and_exit(directory: str, results: multiprocessing.Queue[str]) -> None:
    results.put(FileBackend(directory).lock(LockInfo(operation="apply")))


def test_a_lock_left_by_a_process_that_is_gone_is_taken_over(tmp_path: Path) -> None:
    root = make_pipeline(tmp_path / "project")
    results: multiprocessing.Queue[str] = FORK.Queue()
    child = FORK.Process(target=_lock_and_exit, args=(str(lock_path(root).parent), results))
    child.start()
    lock_id = results.get(timeout=30)
    child.join(30)  # reaped: its pid is gone from this host
    assert json.loads(lock_path(root).read_text())["id"] == lock_id
    proc = popen(root, "plan")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    assert f"Taking over the state lock of process {child.pid} on this host, which is gone" in err
    assert err.count("Taking over") == 1, err
    assert not lock_path(root).exists()


def test_a_lock_held_on_another_host_is_not_taken_over(tmp_path: Path) -> None:
    root = make_pipeline(tmp_path / "project")
    lock_path(root).parent.mkdir(parents=True)
    other = LockInfo(operation="apply", id="other-host-lock", who="bob@elsewhere", pid=1)
    lock_path(root).write_text(json.dumps(other.to_json()))
    proc = popen(root, "plan")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    assert "Error acquiring the state lock" in err
    assert "substratus force-unlock other-host-lock" in err
    assert json.loads(lock_path(root).read_text())["id"] == "other-host-lock"


# -- a state that cannot be written --------------------------------------------------------------


def test_a_state_write_conflict_is_said_once_with_two_versions(tmp_path: Path) -> None:
    job, bump = (
        'command: ["python3", "job.py"]}\n  loader',
        'command: ["python3", "bump.py"]}\n  loader',
    )
    root = make_pipeline(tmp_path / "conflict", PIPELINE.replace(job, bump))
    (root / "app" / "bump.py").write_text(BUMP)
    log = tmp_path / "runs.log"
    env = {"RUNS_LOG": str(log), "STATE_DIR": str(lock_path(root).parent)}
    try:
        proc = popen(root, "apply", "--auto-approve", env=env)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, (out, err)
        assert runs(log) == {"data": 1}
        assert (out + err).count("state write conflict") == 1, out + err
        assert err.count("Error:") == 1, err
        line = next(x for x in err.splitlines() if "state write conflict" in x)
        read, _, now = line.partition("(read ")[2].partition("; it is now ")
        assert read and now and read != now.partition(" (serial")[0], line
        no_traceback(out + err)
        assert not lock_path(root).exists()
    finally:
        subprocess.run(
            [sys.executable, "-m", "substratus", "destroy", "--auto-approve", "--no-lock"],
            cwd=root,
            env={**os.environ, **env},
            capture_output=True,
            timeout=120,
        )
        kill_leftovers(tmp_path)


# The job makes the file system that holds the state read-only (it runs in the CLI's private
# mount namespace, as root), then succeeds: the state cannot record it.
FREEZE = """\
import json, os, pathlib, subprocess
content = pathlib.Path(os.environ["CONTENT_DIR"])
params = json.loads((content / "params.json").read_text())
subprocess.run(["mount", "-o", "remount,ro", params["freeze"]], check=True)
(content / "artifacts" / "out.txt").write_text("ok")
"""


def test_a_read_only_state_is_said_once_with_what_to_do(tmp_path: Path) -> None:
    argv = unshare_argv()
    if isinstance(argv, str):
        unavailable(f"a file system to make read-only is needed: {argv}")
    if os.geteuid() != 0:
        pytest.skip("the job remounts the state's file system: it must run as root")
    root = tmp_path / "frozen"
    (root / "app").mkdir(parents=True)
    (root / "app" / "freeze.py").write_text(FREEZE)
    states = root / ".substratus" / "state"
    states.mkdir(parents=True)
    (root / "substratus.yaml").write_text(
        "kind: Dataset\nname: data\nspec:\n"
        '  container: {local: {path: ./app}, command: ["python3", "freeze.py"]}\n'
        f"  loader: {{params: {{freeze: {states}}}}}\n"
    )
    command = [*argv, "sh", "-c", MOUNT, "sh", "8m", str(states)]
    try:
        out = subprocess.run(
            [*command, sys.executable, "-m", "substratus", "apply", "--auto-approve"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"},
        )
    finally:
        kill_leftovers(tmp_path)
    both = out.stdout + out.stderr
    assert out.returncode == 1, both
    assert out.stderr.startswith(f"Error: could not write the state to {states}/"), out.stderr
    assert "Read-only file system" in out.stderr.splitlines()[0]
    assert "The file system is read-only" in out.stderr
    assert both.count("could not write the state") == 1, both
    assert both.count("Error:") == 1, both
    assert "Apply complete" not in out.stdout
    no_traceback(both)
    # the lock cannot be removed from a read-only file system: said once, with what to do
    assert out.stderr.count("could not remove the lock file") == 1, out.stderr
    assert "takes it over" in out.stderr
