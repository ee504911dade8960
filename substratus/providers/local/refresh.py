"""Refresh: what exists now of each recorded resource, in one pass (``LocalRuntime.refresh``).

Builds and versions are checked by path, versions in a remote store by their markers (one list
call per store prefix for all records, ``present_versions``), servers by pid + start time and one
``GET /``; no subprocess is started. For a record with a pending operation, the work the
interrupted apply started is reported as ``completed`` (a final version or a healthy process for
the pending digest exists), ``running`` (its supervisor or process is alive) or ``gone``.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from pathlib import Path
from typing import Any, Literal

from substratus.engine.runtime import Observation
from substratus.engine.statefile import PendingOperation, ResourceRecord
from substratus.providers.local.artifacts import is_remote, present_versions
from substratus.providers.local.job import Jobs
from substratus.providers.local.server import Servers
from substratus.providers.local.workdir import Workdir

Status = Literal["present", "missing", "degraded"]
Pending = Literal["none", "running", "completed", "gone"]
SERVER_KINDS = ("modelserver", "notebook")


def _path_status(outputs: Mapping[str, Any], key: str, what: str) -> tuple[Status, str]:
    value = outputs.get(key)
    if not value or Path(str(value)).is_dir():
        return "present", ""
    return "missing", f"{what} at {value} were deleted outside substratus"


class Refresher:
    def __init__(self, workdir: Workdir, jobs: Jobs, servers: Servers) -> None:
        self.workdir, self.jobs, self.servers = workdir, jobs, servers

    def status(self, record: ResourceRecord, present: Set[str] = frozenset()) -> tuple[Status, str]:
        """Status of a recorded resource; ``present``: the complete remote version URLs."""
        outputs = record.outputs
        if record.kind == "build":
            status, message = _path_status(outputs, "context_dir", "the build context")
            return status, message.replace(" were ", " was ")
        if record.kind in SERVER_KINDS:
            return self.servers.status(record.kind, outputs)
        url = outputs.get("artifacts")
        if is_remote(url):
            if url in present:
                return "present", ""
            return "missing", f"artifacts at {url} were deleted outside substratus"
        return _path_status(outputs, "artifacts_path", "artifacts")

    def pending(self, record: ResourceRecord, op: PendingOperation) -> tuple[Pending, str]:
        ns, kind, name = record.namespace, record.kind, record.name
        version = op.run_version
        if kind == "build":
            if self.workdir.build_dir(version).is_dir():
                return "completed", "the build context of the interrupted apply is complete"
            return "gone", "the interrupted build did not finish"
        if kind in SERVER_KINDS:
            return self.servers.pending(kind, self.workdir.run(ns, kind, name, version))
        if kind == "model" and not (op.spec.get("loader") or op.spec.get("trainer")):
            return "gone", "nothing was left running"
        return self.jobs.status(self.jobs.names(ns, kind, name, version))

    def observe(self, records: Mapping[str, ResourceRecord]) -> dict[str, Observation]:
        observations = {}
        urls = [r.outputs.get("artifacts") for r in records.values() if r.kind not in SERVER_KINDS]
        present = present_versions(str(u) for u in urls if is_remote(u))
        for address, record in records.items():
            status, message = self.status(record, present)
            if record.pending is None:
                observations[address] = Observation(status, message)
                continue
            pending, pending_message = self.pending(record, record.pending)
            observations[address] = Observation(status, message, pending, pending_message)
        return observations
