"""Refresh: what exists now of each recorded resource, in one pass (``LocalRuntime.refresh``).

Builds and versions are checked by path, versions in a remote store by their markers (one list
call per store prefix for all records, ``inspect_remote``), servers by pid + start time and one
``GET /``; no subprocess is started. A completed version whose files differ from its manifest
(``manifest.changes`` for ``file://``; for ``gs://`` the content fingerprint recorded in its
outputs against the listing) is ``changed``: "artifacts changed outside substratus". For a
record with a pending operation, the work the interrupted apply started is reported as
``completed`` (a final version or a healthy process for the pending digest exists), ``running``
(its supervisor or process is alive) or ``gone``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from substratus.engine import kinds
from substratus.engine.runtime import Observation
from substratus.runtimes.local import manifest
from substratus.runtimes.local.artifacts import inspect_remote, is_remote
from substratus.runtimes.local.job import Jobs
from substratus.runtimes.local.server import Servers
from substratus.runtimes.local.workdir import Workdir

if TYPE_CHECKING:  # the state's models: refreshing is given them, validating needs none
    from substratus.engine.statefile import PendingOperation, ResourceRecord

Status = Literal["present", "missing", "degraded", "changed"]
CHANGED = "artifacts changed outside substratus"
Pending = Literal["none", "running", "completed", "gone"]


def _changed(changes: list[str], where: str) -> tuple[Status, str]:
    if not changes:
        return "present", ""
    shown = ", ".join(changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
    return "changed", f"{CHANGED} at {where}: {shown}"


def _path_status(outputs: Mapping[str, Any], key: str, what: str) -> tuple[Status, str]:
    value = outputs.get(key)
    if not value or Path(str(value)).is_dir():
        return "present", ""
    return "missing", f"{what} at {value} were deleted outside substratus"


class Refresher:
    def __init__(self, workdir: Workdir, jobs: Jobs, servers: Servers) -> None:
        self.workdir, self.jobs, self.servers = workdir, jobs, servers

    def status(
        self, record: ResourceRecord, remote: Mapping[str, list[str] | None] | None = None
    ) -> tuple[Status, str]:
        """Status of a recorded resource; ``remote``: what ``inspect_remote`` found of the
        remote versions."""
        outputs = record.outputs
        if record.kind == "build":
            status, message = _path_status(outputs, "context_dir", "the build context")
            return status, message.replace(" were ", " was ")
        if kinds.is_service_kind(record.kind):
            return self.servers.status(record.kind, outputs)
        url = outputs.get("artifacts")
        if is_remote(url):
            found = (remote or {}).get(str(url))
            if found is None:
                return "missing", f"artifacts at {url} were deleted outside substratus"
            return _changed(found, str(url))
        status, message = _path_status(outputs, "artifacts_path", "artifacts")
        path = outputs.get("artifacts_path")
        if status == "present" and path and kinds.versioned(record.kind):
            return _changed(manifest.changes(Path(str(path))) or [], str(path))
        return status, message

    def pending(self, record: ResourceRecord, op: PendingOperation) -> tuple[Pending, str]:
        ns, kind, name = record.namespace, record.kind, record.name
        version = op.run_version
        if kind == "build":
            if self.workdir.build_dir(version).is_dir():
                return "completed", "the build context of the interrupted apply is complete"
            return "gone", "the interrupted build did not finish"
        if kinds.is_service_kind(kind):
            return self.servers.pending(kind, self.workdir.run(ns, kind, name, version))
        if kinds.workload(kind, op.spec) is kinds.Workload.LOCATION:
            return "gone", "nothing was left running"
        return self.jobs.status(self.jobs.names(ns, kind, name, version))

    def observe(self, records: Mapping[str, ResourceRecord]) -> dict[str, Observation]:
        observations = {}
        wanted = {
            str(r.outputs["artifacts"]): r.outputs.get("manifest")
            for r in records.values()
            if not kinds.is_service_kind(r.kind) and is_remote(r.outputs.get("artifacts"))
        }
        remote = inspect_remote(wanted)
        for address, record in records.items():
            status, message = self.status(record, remote)
            if record.pending is None:
                observations[address] = Observation(status, message)
                continue
            pending, pending_message = self.pending(record, record.pending)
            observations[address] = Observation(status, message, pending, pending_message)
        return observations
