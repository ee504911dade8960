"""``LocalRuntime``: the ``Runtime`` that runs resources as processes on this machine (DESIGN §8).

``LocalRuntime(workdir, artifacts_url)`` — ``workdir`` is the ``.substratus`` directory beside the
configuration (builds, runs and logs go under it), ``artifacts_url`` the artifact store for new
versions (``file://``, default ``{workdir}/artifacts``, or ``gs://bucket/prefix`` mirrored under
``{workdir}/cache/gcs``). Inputs are resolved by the URL their producer recorded, so stores mix:
a gs:// input is fetched into the mirror, a file:// one is linked as is. Per kind:

- build → a build context directory (``build.py``); outputs ``context_dir`` (and
  ``source_dir``, the directory itself, for a local source);
- dataset, model with a loader or trainer → a supervised job (``job.py``); outputs ``artifacts``,
  ``artifacts_path`` (the local directory: for gs:// its mirror), ``log``, ``run_dir``;
- model with only a ``url`` → the location is checked; outputs ``artifacts``, ``artifacts_path``;
- ``read_external`` → the newest completed version of a Dataset/Model in the artifact store
  (digest = its version directory name; outputs ``artifacts``, ``artifacts_path``);
- modelserver, notebook → a detached process (``server.py``; a notebook of a local source
  runs in that directory itself, so the work done in it is the user's files); outputs ``pid``,
  ``pid_start``, ``port``, ``endpoint``, ``log``, ``run_dir`` (+ ``url``, ``artifacts``,
  ``artifacts_path`` for notebooks); ``{"replicas": 0}`` or ``{"suspended": True, …}`` when
  nothing should run.

This class only dispatches; it holds no state beyond its two locations. Store problems found
while planning (refresh, ``read_external``) are diagnostics; during apply, ``RunError``s.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from substratus.engine.diagnostic import Diagnostic, fail
from substratus.engine.runtime import (
    DeleteRequest,
    ExternalResource,
    Observation,
    ResourceView,
    RunContext,
    RunError,
    RunRequest,
)
from substratus.engine.statefile import ResourceRecord
from substratus.providers.local import check as checks
from substratus.providers.local.artifacts import (
    ArtifactStore,
    input_dir,
    is_remote,
    local_path,
    open_store,
)
from substratus.providers.local.build import context_dir, materialise
from substratus.providers.local.files import remove_tree
from substratus.providers.local.job import Jobs, keep_set
from substratus.providers.local.refresh import Refresher
from substratus.providers.local.server import Servers
from substratus.providers.local.session import LocalNotebookSession
from substratus.providers.local.workdir import Workdir

JOB_KINDS = ("dataset", "model")
SERVER_KINDS = ("modelserver", "notebook")
T = TypeVar("T")


def is_job(kind: str, spec: Mapping[str, Any]) -> bool:
    """Datasets always run a loader; a Model runs only with a loader or a trainer."""
    if kind == "dataset":
        return True
    return kind == "model" and bool(spec.get("loader") or spec.get("trainer"))


class LocalRuntime:
    name = "local"

    def __init__(
        self, workdir: Path, artifacts_url: str | None = None, poll_interval: float = 0.1
    ) -> None:
        self.workdir = Workdir(Path(workdir))
        self.store: ArtifactStore = open_store(
            artifacts_url or (self.workdir.root / "artifacts").as_uri(), self.workdir.root
        )
        self.jobs = Jobs(self.workdir, self.store, poll_interval)
        self.servers = Servers(self.workdir, self.store, poll_interval)
        self._refresher = Refresher(self.workdir, self.jobs, self.servers)

    def check(self, resources: Sequence[ResourceView]) -> list[Diagnostic]:
        uses_store = any(is_job(r.kind, r.spec) for r in resources)
        return checks.check(resources) + (self.store.check() if uses_store else [])

    def refresh(self, records: Mapping[str, ResourceRecord]) -> dict[str, Observation]:
        return _planning(lambda: self._refresher.observe(records))

    def read_external(self, kind: str, namespace: str, name: str) -> ExternalResource | None:
        """The newest completed version of a Dataset/Model in the artifact store, if any."""
        if kind not in JOB_KINDS:
            return None
        found = _planning(lambda: self.jobs.newest_version(namespace, kind, name))
        if found is None:
            return None
        return ExternalResource(digest=found.name, outputs=self.jobs.version_outputs(found))

    def intent(self, request: RunRequest) -> dict[str, Any]:
        kind = request.kind
        if kind == "build":
            target = self.workdir.build_dir(request.digest)
            return {"build_dir": str(target), "context_dir": str(context_dir(request.spec, target))}
        if is_job(kind, request.spec):
            names = self.jobs.names(request.namespace, kind, request.name, request.digest)
            return self.jobs.intent(names)
        if kind in SERVER_KINDS:
            return self.servers.intent(request)
        return {}

    def apply(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        kind = request.kind
        if kind == "build":
            target = self.workdir.build_dir(request.digest)
            context, adopted = materialise(request.spec, target, ctx.phase)
            if adopted:
                ctx.phase("adopted an existing build context")
            out = {"context_dir": str(context)}
            if request.spec.get("source") == "local":  # notebooks work in the directory itself
                out["source_dir"] = str(request.spec["path"])
            return out
        if is_job(kind, request.spec):
            return self.jobs.apply(request, ctx)
        if kind == "model":
            return self._model_location(request)
        if kind in SERVER_KINDS:
            return self.servers.apply(self._local_inputs(request, ctx), ctx)
        raise RunError(f"the local runtime does not know the kind {kind!r}")

    def _local_inputs(self, request: RunRequest, ctx: RunContext) -> RunRequest:
        """The request with gs:// inputs fetched into the mirror (``artifacts_path`` local)."""
        inputs = dict(request.inputs)
        for role in ("data", "model"):
            if is_remote((inputs.get(role) or {}).get("artifacts")):
                ctx.phase(f"fetching the {role} input {inputs[role]['artifacts']}")
                path = input_dir(inputs, role, self.workdir.root)
                inputs[role] = {**inputs[role], "artifacts_path": str(path)}
        return dataclasses.replace(request, inputs=inputs)

    def _model_location(self, request: RunRequest) -> dict[str, Any]:
        url = str(request.spec.get("url") or "")
        path = local_path(url, Path(request.config_dir).resolve())
        if path is None:
            raise RunError(
                f"model url {url} is not a local path",
                "the local runtime reads model weights from file:// URLs",
            )
        if not path.exists():
            raise RunError(f"the model weights at {url} do not exist", f"{path} is missing")
        return {"artifacts": self.store.url_for(path), "artifacts_path": str(path.resolve())}

    def delete(self, request: DeleteRequest, ctx: RunContext) -> None:
        kind, ns, name = request.kind, request.namespace, request.name
        ctx.phase("deleting")
        if kind == "build":
            remove_tree(self.workdir.build_dir(request.digest))
        elif kind in JOB_KINDS:  # also a pending-only record (empty spec) or a url model
            self.jobs.delete(ns, kind, name, request.retain_artifacts)
        elif kind in SERVER_KINDS:
            self.servers.delete(ns, kind, name, request.outputs, request.retain_artifacts)

    def notebook_session(
        self, namespace: str, name: str, outputs: Mapping[str, Any], local_port: int
    ) -> LocalNotebookSession:
        """The running notebook as it is: local already (see ``engine.session``)."""
        return LocalNotebookSession(outputs)

    def collect_garbage(self, records: Mapping[str, ResourceRecord]) -> None:
        builds: set[str] = set()
        for record in records.values():
            if record.kind == "build":
                pending = record.pending.digest if record.pending else None
                builds |= keep_set(record.digest, record.previous_digest, pending)
        if self.workdir.builds.is_dir():
            for entry in self.workdir.builds.iterdir():
                if entry.is_dir() and not entry.name.startswith(".") and entry.name not in builds:
                    remove_tree(entry)
        for record in records.values():
            if record.kind not in JOB_KINDS:
                continue
            pending = record.pending.digest if record.pending else None
            keep = keep_set(record.digest, record.previous_digest, pending)
            # best effort: what a remote store refuses now is collected after a later apply
            with contextlib.suppress(RunError):
                self.jobs.collect_garbage(record.namespace, record.kind, record.name, keep)


def _planning(step: Callable[[], T]) -> T:
    """Run a plan-time step; a store problem becomes a diagnostic (no traceback)."""
    try:
        return step()
    except RunError as exc:
        raise fail(exc.message, exc.detail) from exc
