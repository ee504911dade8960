"""A plan cut off from what it needs, through the CLI: no Google Cloud credentials for the gs://
state, a cluster at a closed port, a git host at a closed port. One run names every missing piece
with where it is configured and the command that previews the plan without them; that command
(after pinning the git source to a commit) plans; nothing is written meanwhile."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tests.support.offline import closed_port, offline_env

CONFIG = """\
kind: Project
spec:
  runtime: kubernetes
  state: gs://no-such-bucket/state
  artifacts: gs://no-such-bucket/artifacts
  registry: registry.example/substratus
---
kind: Dataset
name: rows
spec:
  container:
    git: {{url: "http://127.0.0.1:{port}/loader.git", ref: main}}
  loader:
    params: {{rows: 3}}
"""
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "substratus", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,  # a bound: every piece is a closed port or a missing file
    )


def errors(stderr: str) -> list[str]:
    return re.findall(r"^Error: (.*)$", stderr, re.M)


def test_a_plan_names_every_missing_piece_in_one_run(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "substratus.yaml").write_text(CONFIG.format(port=closed_port()))
    env = offline_env(tmp_path)
    started = time.monotonic()
    failed = run(project, env, "plan", "-f", "substratus.yaml")
    took = time.monotonic() - started
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr
    said = errors(failed.stderr)
    assert said[0] == (
        "The plan cannot reach the state (gs://no-such-bucket/state), 1 git source and the cluster"
    ), failed.stderr
    assert len(said) == 5, failed.stderr  # the summary, each piece once, the configuration
    assert said[1].startswith("No Google Cloud credentials")
    assert "on substratus.yaml:4, spec.state" in failed.stderr
    assert said[2] == "Cannot resolve build source"
    assert re.search(r"on substratus\.yaml:11, build\.[a-z0-9-]+, spec\.container", failed.stderr)
    assert said[3].startswith("cannot reach the Kubernetes API server at https://127.0.0.1:")
    assert "on substratus.yaml:3, spec.runtime" in failed.stderr
    # what the plan would have said next about the configuration, in the same run
    assert said[4].startswith("the artifact store gs://no-such-bucket/artifacts needs GKE's")
    assert took < 60, f"the plan took {took:.0f} s to fail"
    assert sorted(p.name for p in project.iterdir()) == ["substratus.yaml"]  # nothing written

    applied = run(project, env, "apply", "-f", "substratus.yaml", "--auto-approve")
    assert applied.returncode == 1 and "Traceback" not in applied.stderr
    assert errors(applied.stderr)[0].startswith("The apply cannot reach the state"), applied
    destroyed = run(project, env, "destroy", "-f", "substratus.yaml", "--auto-approve")
    said = errors(destroyed.stderr)
    assert (
        said[0] == "The destroy cannot reach the state (gs://no-such-bucket/state) and the cluster"
    )
    assert "substratus plan" not in destroyed.stderr  # an empty preview state destroys nothing

    preview = re.search(r"^ +(substratus plan .*)$", failed.stderr, re.M)
    assert preview is not None, failed.stderr
    command = shlex.split(preview[1])
    assert command == [
        "substratus",
        "plan",
        "-f",
        "substratus.yaml",
        "--state",
        "file://.substratus/preview",
        "--no-refresh",
    ]
    assert "pin each git source to a commit" in failed.stderr
    config = project / "substratus.yaml"
    fixed = config.read_text().replace("ref: main", f"ref: {COMMIT}")
    config.write_text(fixed.replace("runtime: kubernetes", "runtime: kubernetes\n  cloud: gcp"))
    planned = run(project, env, *command[1:])
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in planned.stdout
    assert f'commit = "{COMMIT}"' in planned.stdout  # used as is: no git host was asked


def test_a_lock_held_is_said_as_it_is(tmp_path: Path) -> None:
    from substratus.engine.backend import LockInfo
    from substratus.state.local import FileBackend

    project = tmp_path / "project"
    project.mkdir()
    (project / "substratus.yaml").write_text(
        'kind: Dataset\nname: rows\nspec:\n  container: {local: {path: .}, command: ["true"]}\n'
    )
    FileBackend(project / ".substratus" / "state").lock(LockInfo(operation="apply"))
    held = run(project, offline_env(tmp_path), "plan")
    assert held.returncode == 1
    assert errors(held.stderr) == ["Error acquiring the state lock"], held.stderr
