"""A job that fills the disk fails saying "No space left on device", for real: the CLI runs in a
private mount namespace (``unshare``) with a small tmpfs where the full disk bites —

- the whole ``.substratus`` directory (runs, logs, ``exit_code``, artifacts and state on one
  full disk: the job's log and its supervisor's records would be lost without the supervisor's
  reserve, and the apply used to say only "the job was stopped before it finished");
- only the artifact store (``--artifacts``): the job's own error reaches its log, and the
  failure names the full file system;
- ``.substratus`` with a state too large for what is left: the state cannot record the failure,
  and the apply says both why the job failed and why the state could not be written;
- a model server that fills the disk while it starts says so too.

Runs are counted by the job itself (``$RUNS_LOG``). Where a tmpfs cannot be mounted (no
``unshare``, no root and no user namespaces) the tests skip locally and fail in CI.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Project, kill_leftovers
from tests.support.ci import unavailable

CONFIG = """\
kind: Dataset
name: weights
spec:
  container: {local: {path: ./app}, command: ["python3", "fill.py"]}
"""

# Logs exactly two pages of progress first (so, on a full tmpfs, its log has no room left for
# its own error: only the supervisor's note, written from its reserve, says why), then writes
# more than any test tmpfs holds into its artifacts.
FILL = """\
import os, pathlib
with open(os.environ["RUNS_LOG"], "a") as fh:
    fh.write("run\\n")
content = pathlib.Path(os.environ["CONTENT_DIR"])
for i in range(128):
    print(f"progress {i:03} " + "." * 50, flush=True)
with open(content / "artifacts" / "weights.bin", "wb") as fh:
    for _ in range(64):
        fh.write(b"\\0" * (1 << 20))
print("saved the weights")
"""

# Mounts a tmpfs of size $1 on $2, then runs the rest of the arguments.
MOUNT = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'


@functools.cache
def unshare_argv() -> list[str] | str:
    """The ``unshare`` prefix that gives a private mount namespace, or why there is none."""
    if shutil.which("unshare") is None:
        return "`unshare` (util-linux) is not installed"
    argv = (
        ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--mount"]
    )
    probe = subprocess.run(
        [*argv, "sh", "-c", MOUNT, "sh", "1m", "/tmp", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace ({probe.stderr.strip()})"
    return argv


@pytest.fixture
def filling(tmp_path: Path) -> Iterator[Project]:
    """A one-Dataset project whose job writes 64 MiB into its artifacts."""
    argv = unshare_argv()
    if isinstance(argv, str):
        unavailable(f"a small full disk is needed: {argv}")
    root = tmp_path / "filling"
    (root / "app").mkdir(parents=True)
    (root / "app" / "fill.py").write_text(FILL)
    (root / "substratus.yaml").write_text(CONFIG)
    (root / ".substratus").mkdir()
    yield Project(root)
    kill_leftovers(tmp_path)


def run_on_tmpfs(
    project: Project, mountpoint: Path, size: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``substratus ARGS`` with a tmpfs of ``size`` on ``mountpoint`` (gone when it exits)."""
    argv = unshare_argv()
    assert isinstance(argv, list)
    command = [*argv, "sh", "-c", MOUNT, "sh", size, str(mountpoint)]
    return subprocess.run(
        [*command, sys.executable, "-m", "substratus", *args],
        cwd=project.dir,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1", "RUNS_LOG": str(project.dir.parent / "runs.log")},
    )


def runs(project: Project) -> int:
    log = project.dir.parent / "runs.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_a_job_that_fills_the_substratus_disk_says_no_space_left(filling: Project) -> None:
    out = run_on_tmpfs(filling, filling.dir / ".substratus", "8m", "apply", "--auto-approve")
    assert out.returncode == 1, out.stdout + out.stderr
    assert runs(filling) == 1
    run_dir = filling.dir / ".substratus" / "runs" / "default" / "datasets" / "weights"
    why = f"No space left on device: the file system holding {run_dir}/"
    assert "dataset.weights: Creation FAILED after" in out.stdout
    assert "dataset job exited with code 1: " + why in out.stdout
    assert out.stderr.startswith("Error: dataset job exited with code 1: " + why)
    assert "stopped before it finished" not in out.stdout + out.stderr
    assert "supervise.py" not in out.stderr  # no traceback of the supervisor
    assert f"substratus: {why}" in out.stderr  # the note it left in the job's log


def test_a_job_that_fills_the_artifact_store_says_no_space_left(filling: Project) -> None:
    store = filling.dir.parent / "store"
    store.mkdir()
    out = run_on_tmpfs(
        filling, store, "4m", "apply", "--auto-approve", "--artifacts", store.as_uri()
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert runs(filling) == 1
    partial = store / "default" / "datasets" / "weights"
    why = f"No space left on device: the file system holding {partial}/"
    assert out.stderr.startswith("Error: dataset job exited with code 1: " + why)
    assert ".partial is full" in out.stderr.splitlines()[0]
    assert "OSError: [Errno 28] No space left on device" in out.stderr  # the job's own words
    assert "stopped before it finished" not in out.stdout + out.stderr


def test_a_state_the_full_disk_cannot_take_does_not_hide_why_the_job_failed(
    filling: Project,
) -> None:
    config = filling.dir / "substratus.yaml"  # every state write now carries ~100 kB
    notes = {f"notes{i}": "n" * 50_000 for i in range(2)}  # each value fits the environment
    config.write_text(CONFIG + "  loader: {params: " + json.dumps(notes) + "}\n")
    out = run_on_tmpfs(filling, filling.dir / ".substratus", "8m", "apply", "--auto-approve")
    assert out.returncode == 1, out.stdout + out.stderr
    assert runs(filling) == 1
    failed = next(line for line in out.stdout.splitlines() if "Creation FAILED" in line)
    assert "dataset job exited with code 1: No space left on device: the file system" in failed
    state = filling.dir / ".substratus" / "state"
    assert out.stderr.startswith(f"Error: could not write the state to {state}/")
    assert "No space left on device" in out.stderr.splitlines()[0]
    assert "Traceback" not in out.stderr


SERVER = """\
kind: Model
name: weights
spec: {url: WEIGHTS}
---
kind: ModelServer
name: api
spec:
  container: {local: {path: ./app}, command: ["python3", "cache.py"]}
  model: weights
"""

# A server that fills the disk while it loads (and so exits before it answers GET /).
CACHE = """\
import os, pathlib
with open(pathlib.Path(os.environ["CONTENT_DIR"]) / "cache.bin", "wb") as fh:
    for _ in range(64):
        fh.write(b"\\0" * (1 << 20))
"""


def test_a_server_that_fills_the_disk_says_no_space_left(filling: Project) -> None:
    weights = filling.dir.parent / "weights"
    weights.mkdir()
    (filling.dir / "substratus.yaml").write_text(SERVER.replace("WEIGHTS", weights.as_uri()))
    (filling.dir / "app" / "cache.py").write_text(CACHE)
    out = run_on_tmpfs(filling, filling.dir / ".substratus", "8m", "apply", "--auto-approve")
    assert out.returncode == 1, out.stdout + out.stderr
    failed = next(line for line in out.stdout.splitlines() if "Creation FAILED" in line)
    run_dir = filling.dir / ".substratus" / "runs" / "default" / "modelservers" / "api"
    assert "modelserver.api: Creation FAILED" in failed
    assert f"exited with code 1 (No space left on device: the file system holding {run_dir}/" in (
        failed
    )
    assert failed.endswith("before answering GET /")
