"""Regenerate the upgrade-compatibility fixtures with the substratus this file is run from.

    PYTHONPATH=$PWD python -m tests.compat.make_fixtures [--force]

writes ``tests/compat/v<version>/`` (``v0.1.0`` for substratus 0.1.0; ``--force`` replaces an
existing one) — never run by the test suite. The directory name is not a Python identifier on
purpose: mypy (``packages = ["tests"]``) does not descend into it, and ``tests/compat/ruff.toml``
keeps ruff away, so the job scripts stay byte for byte what the apply built from.

Each fixture is made by the real CLI (``python -m substratus``) in a fresh temp directory,
copied here, and the temp directory is removed, so the absolute paths the state records
(outputs' ``workdir``, artifact paths, a saved plan's settings) point at a directory that no
longer exists: ``tests/compat/test_upgrade.py`` copies the fixtures elsewhere and relies on the
runtime's ``rebase`` exactly as a user who moved their project would.

- ``file/project``: a configuration (``substratus.yaml``, ``app/``) and the ``.substratus/``
  directory one ``apply`` left: the file-backend state (base ``default.json`` plus its
  unfolded ``default.journal``), builds, runs and local artifacts;
  ``file/expected``: ``state list``, ``state pull`` and ``state show ADDR`` as printed then.
- ``gcs/project``: the same configuration with a ``kind: Project`` putting the state and the
  artifacts in ``gs://<BUCKET>/…`` (fake-gcs-server), and its local ``.substratus/`` (builds, runs,
  the gs:// mirror); ``gcs/objects.json``: every object an ``apply --no-lock`` left (the base and
  its unfolded journal: a locked apply folds the journal when it unlocks) in the bucket (name,
  generation, content type, custom metadata, size, crc32c, content); ``gcs/expected``.
- ``saved_plan/project``: a configuration applied once, then edited (the base Model's loader
  params), its ``.substratus/``, and ``plan.json`` saved by ``plan --out`` against that state.

A new version adds its own directory beside the old ones; the old ones are never regenerated.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from substratus import __version__
from tests.e2e.conftest import SERVE
from tests.e2e.counting import JOB

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ADDRESSES = ("build.app", "dataset.data", "model.base", "model.trained", "modelserver.api")

CONFIG = """\
kind: Dataset
name: data
spec:
  container: {local: {path: ./app}, command: ["python3", "job.py"]}
  loader: {params: {name: data}}
lifecycle:
  preventDestroy: true
  retainArtifacts: true
---
kind: Model
name: base
spec:
  container: {local: {path: ./app}, command: ["python3", "job.py"]}
  loader: {params: {name: base}}
---
kind: Model
name: trained
spec:
  container: {local: {path: ./app}, command: ["python3", "job.py"]}
  trainer:
    baseModel: base
    dataset: data
    params: {name: trained, epochs: 1, api_key: not-a-real-secret}
lifecycle:
  ignoreChanges: [spec.trainer.params.epochs]
sensitive: [spec.trainer.params.api_key]
---
kind: ModelServer
name: api
spec:
  container: {local: {path: ./app}, command: ["python3", "serve.py"]}
  model: trained
  replicas: 0
"""

# The saved plan's configuration: the base Model's loader params changed, so the plan replaces
# model.base and model.trained (two runs) and updates modelserver.api (no run: replicas 0).
PLAN_EDIT = ("loader: {params: {name: base}}", "loader: {params: {name: base, revision: 2}}")


def bucket_name(version: str = __version__) -> str:
    """The bucket the GCS fixture was made in (its artifact URLs name it)."""
    return "substratus-compat-" + version.replace(".", "-")


def gcs_project(bucket: str) -> str:
    return (
        "kind: Project\n"
        "spec:\n"
        f"  state: gs://{bucket}/state\n"
        f"  artifacts: gs://{bucket}/artifacts\n"
        "---\n"
    )


class Recorder:
    """Runs the real CLI in one project directory and remembers the commands for the README."""

    def __init__(self, root: Path, runs_log: Path, env: dict[str, str] | None = None) -> None:
        self.root, self.runs_log, self.env = root, runs_log, env or {}
        self.commands: list[str] = []

    def run(self, *args: str, check: Sequence[int] = (0,)) -> str:
        env = {
            **os.environ,
            "NO_COLOR": "1",
            "RUNS_LOG": str(self.runs_log),
            "PYTHONPATH": str(REPO),
            **self.env,
        }
        proc = subprocess.run(
            [sys.executable, "-m", "substratus", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=300,
        )
        if proc.returncode not in check:
            raise SystemExit(
                f"substratus {' '.join(args)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}"
            )
        self.commands.append("substratus " + " ".join(args))
        return proc.stdout


def write_project(root: Path, config: str) -> None:
    (root / "app").mkdir(parents=True)
    (root / "app" / "job.py").write_text(JOB)
    (root / "app" / "serve.py").write_text(SERVE)
    (root / "substratus.yaml").write_text(config)


def record_expected(rec: Recorder, target: Path) -> None:
    """What today's CLI prints for the state: ``state list``, ``state pull``, ``state show``."""
    target.mkdir(parents=True)
    (target / "state-list.txt").write_text(rec.run("state", "list"))
    (target / "state-pull.json").write_text(rec.run("state", "pull"))
    for address in ADDRESSES:
        (target / f"state-show-{address}.txt").write_text(rec.run("state", "show", address))


def copy_project(root: Path, target: Path) -> None:
    shutil.copytree(root, target, symlinks=True)


def make_file(scratch: Path, out: Path) -> dict[str, Any]:
    root = scratch / "file-project"
    write_project(root, CONFIG)
    rec = Recorder(root, scratch / "file-runs.log")
    rec.run("apply", "--auto-approve")
    if not (root / ".substratus" / "state" / "default.journal").is_file():
        raise SystemExit("the apply left no journal: the fixture would not cover one")
    record_expected(rec, out / "file" / "expected")
    copy_project(root, out / "file" / "project")
    return {"root": str(root), "commands": rec.commands, "runs": read_runs(rec.runs_log)}


def make_saved_plan(scratch: Path, out: Path) -> dict[str, Any]:
    root = scratch / "plan-project"
    write_project(root, CONFIG)
    rec = Recorder(root, scratch / "plan-runs.log")
    rec.run("apply", "--auto-approve")
    config = root / "substratus.yaml"
    config.write_text(config.read_text().replace(*PLAN_EDIT))
    rec.run("plan", "--out", "plan.json", "--detailed-exitcode", check=(2,))
    copy_project(root, out / "saved_plan" / "project")
    return {"root": str(root), "commands": rec.commands, "runs": read_runs(rec.runs_log)}


def make_gcs(scratch: Path, out: Path) -> dict[str, Any]:
    from tests.support.gcs import start_gcs_server

    bucket = bucket_name()
    with start_gcs_server(scratch / "gcs-logs") as server:
        client = server.direct_client()
        client.create_bucket(bucket)
        root = scratch / "gcs-project"
        write_project(root, gcs_project(bucket) + CONFIG)
        rec = Recorder(root, scratch / "gcs-runs.log", server.env)
        # --no-lock: the GCS backend folds its journal into the base when it releases the lock,
        # so only an unlocked (or interrupted) apply leaves journal objects for a reader
        rec.run("apply", "--auto-approve", "--no-lock")
        record_expected(rec, out / "gcs" / "expected")
        objects = [dump_object(blob) for blob in client.list_blobs(bucket)]
    if not any(".journal/" in o["name"] for o in objects):
        raise SystemExit("the gs:// apply left no journal objects: the fixture would not cover one")
    (out / "gcs" / "objects.json").write_text(
        json.dumps({"bucket": bucket, "objects": objects}, indent=2) + "\n"
    )
    copy_project(root, out / "gcs" / "project")
    return {"root": str(root), "commands": rec.commands, "runs": read_runs(rec.runs_log)}


def dump_object(blob: Any) -> dict[str, Any]:
    """One object as the code relies on it: name, generation (journal objects are keyed by
    their base's), content type, custom metadata, size and CRC32C (gs:// refresh), bytes."""
    data: bytes = blob.download_as_bytes()
    out: dict[str, Any] = {
        "name": blob.name,
        "generation": int(blob.generation),
        "content_type": blob.content_type,
        "metadata": dict(blob.metadata or {}),
        "size": int(blob.size),
        "crc32c": blob.crc32c,
    }
    try:
        out["content"] = data.decode("utf-8")
    except UnicodeDecodeError:
        out["content_base64"] = base64.b64encode(data).decode("ascii")
    return out


def read_runs(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def git_commit() -> str:
    """The commit of the code that made the fixtures (``substratus/`` must be unmodified)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    edited = git("status", "--porcelain", "--", "substratus")
    return commit + (" with uncommitted changes to substratus/" if edited else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace an existing directory")
    args = parser.parse_args(argv)
    out = HERE / f"v{__version__}"
    if out.exists():
        if not args.force:
            raise SystemExit(f"{out} exists; fixtures of a released version are never remade")
        shutil.rmtree(out)
    made: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="substratus-compat-") as scratch:
        for name, make in (("file", make_file), ("gcs", make_gcs), ("saved_plan", make_saved_plan)):
            made[name] = make(Path(scratch), out)
    (out / "made.json").write_text(
        json.dumps({"substratus": __version__, "commit": git_commit(), **made}, indent=2) + "\n"
    )
    print(f"wrote {out}; describe it in {out / 'README.md'}")


if __name__ == "__main__":
    main()
