"""The working directory of the local runtime (``.substratus`` beside the configuration).

Layout, all names derived from (namespace, kind, name, digest) so ``intent`` can name them before
anything exists:

- ``builds/{digest[:16]}/`` — a materialised build context (a git checkout or a copy);
- ``runs/{namespace}/{kind}s/{name}/{digest[:16]}/`` — one run of a workload: ``content/`` (its
  ``CONTENT_DIR``), ``log.txt``, ``lock`` (held by a job's supervisor), ``supervisor.json`` and
  ``child.json`` (pids with start times), ``exit_code`` (the code, then the reason a job failed
  when known), ``reserve`` (space a supervisor sets aside for its last writes),
  ``process.json`` (a server's process).

This module only computes paths; ``RunFiles`` names the files inside one run directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from substratus.providers.local.files import short_digest


@dataclass(frozen=True)
class RunFiles:
    """The files of one run directory."""

    dir: Path

    @property
    def content(self) -> Path:
        return self.dir / "content"

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
    def reserve(self) -> Path:
        return self.dir / "reserve"

    @property
    def process(self) -> Path:
        return self.dir / "process.json"


class Workdir:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def builds(self) -> Path:
        return self.root / "builds"

    def build_dir(self, digest: str) -> Path:
        return self.builds / short_digest(digest)

    def resource_runs(self, namespace: str, kind: str, name: str) -> Path:
        return self.root / "runs" / namespace / f"{kind}s" / name

    def run(self, namespace: str, kind: str, name: str, digest: str) -> RunFiles:
        return RunFiles(self.resource_runs(namespace, kind, name) / short_digest(digest))

    def runs_of(self, namespace: str, kind: str, name: str) -> list[RunFiles]:
        base = self.resource_runs(namespace, kind, name)
        try:
            return [RunFiles(p) for p in sorted(base.iterdir()) if p.is_dir()]
        except OSError:
            return []
