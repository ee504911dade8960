"""The working directory of the local runtime (``.substratus`` beside the configuration).

Layout, all names derived from (namespace, kind, name, version) — a version names one run
(``engine.statefile``) — so ``intent`` can name them before anything exists:

- ``builds/{version}/`` — a materialised build context (a git checkout or a copy);
- ``runs/{namespace}/{kind}s/{name}/{version}/`` — one run of a workload: ``content/`` (its
  ``CONTENT_DIR``), ``log.txt``, ``lock`` (held by a job's supervisor), ``supervisor.json`` and
  ``child.json`` (pids with start times; a run the job host supervises has no
  ``supervisor.json``: its ``child.json`` names the host under ``"host"``), ``stop`` (asks a
  supervisor to stop the run: no attempt follows),
  ``exit_code`` (the code, then the reason a job failed
  when known), ``attempts.jsonl`` (the failed attempts of a job that retries), ``.exit_code.tmp``
  (space a supervisor sets aside for its last writes, then its exit code before the rename),
  ``process.json`` (a server's process).

Outputs record the working directory they were made in (``workdir``); when that directory is gone,
``rebase`` moves their paths to where this one is now, so moving or renaming the configuration
directory (which holds ``.substratus``) loses nothing.

This module only computes paths; ``RunFiles`` names the files inside one run directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from substratus.engine.kinds import artifact_prefix


@dataclass(frozen=True)
class RunFiles:
    """The files of one run directory."""

    dir: Path

    @property
    def content(self) -> Path:
        return self.dir / "content"

    @property
    def params(self) -> Path:
        """``content/params.json``: 0600, gone once the run succeeded (it may hold secrets)."""
        return self.content / "params.json"

    @property
    def log(self) -> Path:
        return self.dir / "log.txt"

    @property
    def lock(self) -> Path:
        return self.dir / "lock"

    @property
    def supervisor(self) -> Path:
        return self.dir / "supervisor.json"

    @property
    def child(self) -> Path:
        return self.dir / "child.json"

    @property
    def exit_code(self) -> Path:
        return self.dir / "exit_code"

    @property
    def attempts(self) -> Path:
        """``attempts.jsonl``: a line per failed attempt of a job (``runtimes.local.attempts``)."""
        return self.dir / "attempts.jsonl"

    @property
    def stop(self) -> Path:
        """``stop``: made to tell the job host that a run it supervises must stop (no attempt
        follows); the run's command is signalled too (``job.stop_run``)."""
        return self.dir / "stop"

    @property
    def reserve(self) -> Path:
        """Space a supervisor sets aside for its last writes: the file that becomes
        ``exit_code`` (emptied to free the space, then written and renamed)."""
        return self.dir / ".exit_code.tmp"

    @property
    def process(self) -> Path:
        return self.dir / "process.json"


class Workdir:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def builds(self) -> Path:
        return self.root / "builds"

    def build_dir(self, version: str) -> Path:
        return self.builds / version

    def resource_runs(self, namespace: str, kind: str, name: str) -> Path:
        return self.root / "runs" / artifact_prefix(namespace, kind, name)

    def run(self, namespace: str, kind: str, name: str, version: str) -> RunFiles:
        return RunFiles(self.resource_runs(namespace, kind, name) / version)

    def runs_of(self, namespace: str, kind: str, name: str) -> list[RunFiles]:
        base = self.resource_runs(namespace, kind, name)
        try:
            return [RunFiles(p) for p in sorted(base.iterdir()) if p.is_dir()]
        except OSError:
            return []


def rebase(outputs: Mapping[str, Any] | None, root: Path) -> dict[str, Any]:
    """``outputs`` with the paths (and ``file://`` URLs) inside the working directory they
    were recorded in moved to ``root``, where that directory is now — when it is not where it
    was any more (outputs of another working directory that still exists are left alone)."""
    out = dict(outputs or {})
    old = out.get("workdir")
    if not isinstance(old, str) or old == str(root) or Path(old).exists():
        return out
    moves = ((old, str(root)), (Path(old).as_uri(), root.as_uri()))

    def move(value: Any) -> Any:
        if isinstance(value, str):
            for before, after in moves:
                if value == before or value.startswith(before + "/"):
                    return after + value[len(before) :]
        return value

    return {**{k: move(v) for k, v in out.items()}, "workdir": str(root)}
