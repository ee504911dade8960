"""``LocalRuntime``: the ``Runtime`` that runs resources as processes on this machine (DESIGN §8).

``LocalRuntime(workdir, artifacts_url)`` — ``workdir`` is the ``.substratus`` directory beside the
configuration (builds, runs and logs go under it), ``artifacts_url`` the artifact store for new
versions (``file://``, default ``{workdir}/artifacts``, or ``gs://bucket/prefix`` mirrored under
``{workdir}/cache/gcs``). Inputs are resolved by the URL their producer recorded, so stores mix:
a gs:// input is fetched into the mirror, a file:// one is linked as is. Per kind:

- build → a build context directory per version (``build.py``); outputs ``context_dir`` (and
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

Every output records the working directory it was made in (``workdir``); outputs read back
from the state are ``rebase``d to where it is now (the configuration directory may have been
moved). Everything is named by the run's version (``RunRequest.version``). ``delete`` and
``collect_garbage`` remove only the versions (artifacts, runs, builds) a state's records name,
and keep those another state holds (``runtimes.holds``, in the artifact store).

This class only dispatches; it holds no state beyond its two locations. Store problems found
while planning (refresh, ``read_external``) are diagnostics; during apply, ``Failure``s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from substratus.engine import kinds
from substratus.engine.builds import resolve_location
from substratus.engine.diagnostic import Diagnostic, fail
from substratus.engine.failure import Failure
from substratus.engine.runtime import (
    DeleteRequest,
    ExternalResource,
    Garbage,
    Held,
    LogRequest,
    Observation,
    Owner,
    ResourceView,
    RunContext,
    RunRequest,
)
from substratus.runtimes.local import check as checks
from substratus.runtimes.local.artifacts import (
    ArtifactStore,
    input_dir,
    is_remote,
    local_path,
    open_store,
)
from substratus.runtimes.local.files import remove_tree
from substratus.runtimes.local.workdir import Workdir, rebase

# Jobs, servers, builds, logs and sessions are imported when first used: ``validate`` only
# checks (``check``), and the CLI's start-up time is every command's.
if TYPE_CHECKING:
    from substratus.engine.statefile import ResourceRecord
    from substratus.runtimes.local.job import Jobs
    from substratus.runtimes.local.refresh import Refresher
    from substratus.runtimes.local.server import Servers
    from substratus.runtimes.local.session import LocalNotebookSession

T = TypeVar("T")


class LocalRuntime:
    name = "local"

    def __init__(
        self, workdir: Path, artifacts_url: str | None = None, poll_interval: float = 0.1
    ) -> None:
        self.workdir = Workdir(Path(workdir))
        self.store: ArtifactStore = open_store(
            artifacts_url or (self.workdir.root / "artifacts").as_uri(), self.workdir.root
        )
        self.poll_interval = poll_interval

    # Made on first use (their modules with them). They hold nothing but the locations and the
    # poll interval, so one made twice by threads racing to use it first (Python 3.12 dropped
    # cached_property's lock) is as good as the other.
    @functools.cached_property
    def jobs(self) -> Jobs:
        from substratus.runtimes.local.job import Jobs

        return Jobs(self.workdir, self.store, self.poll_interval)

    @functools.cached_property
    def servers(self) -> Servers:
        from substratus.runtimes.local.server import Servers

        return Servers(self.workdir, self.store, self.poll_interval)

    @functools.cached_property
    def _refresher(self) -> Refresher:
        from substratus.runtimes.local.refresh import Refresher

        return Refresher(self.workdir, self.jobs, self.servers)

    def check(self, resources: Sequence[ResourceView]) -> list[Diagnostic]:
        uses_store = any(kinds.is_job(r.kind, r.spec) for r in resources)
        return checks.check(resources) + (self.store.check() if uses_store else [])

    def refresh(
        self, records: Mapping[str, ResourceRecord], owner: Owner = Owner()
    ) -> dict[str, Observation]:
        root = self.workdir.root
        here = {
            a: r.model_copy(update={"outputs": rebase(r.outputs, root)}) for a, r in records.items()
        }
        return _planning(lambda: self._refresher.observe(here))

    def read_external(self, kind: str, namespace: str, name: str) -> ExternalResource | None:
        """The newest completed version of a Dataset/Model in the artifact store, if any."""
        if not kinds.versioned(kind):
            return None
        found = _planning(lambda: self.jobs.newest_version(namespace, kind, name))
        if found is None:
            return None
        return ExternalResource(digest=found.name, outputs=self.jobs.version_outputs(found))

    def intent(self, request: RunRequest) -> dict[str, Any]:
        kind = request.kind
        if kind == "build":
            from substratus.runtimes.local.build import context_dir

            target = self.workdir.build_dir(request.run_version)
            return {"build_dir": str(target), "context_dir": str(context_dir(request.spec, target))}
        if kinds.is_job(kind, request.spec):
            names = self.jobs.names(request.namespace, kind, request.name, request.run_version)
            return self.jobs.intent(names)
        if kinds.is_service_kind(kind):
            return self.servers.intent(request)
        return {}

    def apply(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        root = self.workdir.root
        request = dataclasses.replace(
            request,
            inputs={role: rebase(out, root) for role, out in request.inputs.items()},
            prior_outputs=rebase(request.prior_outputs, root) if request.prior_outputs else None,
        )
        return {**self._apply(request, ctx), "workdir": str(root)}

    def _apply(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        kind = request.kind
        if kind == "build":
            from substratus.runtimes.local import launcher

            launcher.prestart()  # the jobs that use the build start from it: have it ready
            return self._build(request, ctx)
        if kinds.is_job(kind, request.spec):
            return self.jobs.apply(request, ctx)
        if kind == "model":
            return self._model_location(request)
        if kinds.is_service_kind(kind):
            return self.servers.apply(self._local_inputs(request, ctx), ctx)
        raise Failure(f"the local runtime does not know the kind {kind!r}")

    def _build(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        from substratus.runtimes.local.build import materialise

        spec = dict(request.spec)
        for key in ("path", "url") if spec.get("source") == "local" else ("url",):
            if key in spec:
                spec[key] = resolve_location(str(spec[key]), request.config_dir)
        target = self.workdir.build_dir(request.run_version)
        context, adopted = materialise(spec, target, ctx.phase, adopt=request.intent is not None)
        if adopted:
            ctx.phase("adopted the build context an interrupted apply made")
        out = {"context_dir": str(context)}
        if spec.get("source") == "local":  # notebooks work in the directory itself
            out["source_dir"] = str(spec["path"])
        return out

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
            raise Failure(
                f"model url {url} is not a local path",
                "the local runtime reads model weights from file:// URLs",
            )
        if not path.exists():
            raise Failure(f"the model weights at {url} do not exist", f"{path} is missing")
        return {"artifacts": self.store.url_for(path), "artifacts_path": str(path.resolve())}

    def delete(self, request: DeleteRequest, ctx: RunContext) -> None:
        kind, ns, name = request.kind, request.namespace, request.name
        ctx.phase("deleting")
        if kind == "build":
            for version in request.versions:
                remove_tree(self.workdir.build_dir(version))
        elif kinds.versioned(kind):  # also a pending-only record (empty spec) or a url model
            held = self.store.others_holds(request.owner) if not request.retain_artifacts else set()
            self.jobs.delete(ns, kind, name, request.versions, request.retain_artifacts, held)
        elif kinds.is_service_kind(kind):
            outputs = rebase(request.outputs, self.workdir.root)
            self.servers.delete(ns, kind, name, outputs, request.versions, request.retain_artifacts)

    def logs(self, request: LogRequest, cancelled: threading.Event) -> Iterator[str]:
        from substratus.runtimes.local.logs import LocalLogs

        return LocalLogs(self.workdir, self.jobs.poll).logs(request, cancelled)  # see logs.py

    def notebook_session(
        self, namespace: str, name: str, outputs: Mapping[str, Any], local_port: int
    ) -> LocalNotebookSession:
        """The running notebook as it is: local already (see ``engine.session``)."""
        from substratus.runtimes.local.session import LocalNotebookSession

        return LocalNotebookSession(rebase(outputs, self.workdir.root))

    def hold(self, owner: Owner, held: Sequence[Held]) -> None:
        self.store.set_holds(owner, held)

    def collect_garbage(self, owner: Owner, garbage: Sequence[Garbage]) -> set[tuple[str, str]]:
        """Remove what a state no longer needs: build contexts, run directories and artifact
        versions it created, except those still running or held by another state."""
        if not garbage:
            return set()
        try:
            held = self.store.others_holds(owner)
        except Failure:
            return set()  # the holds are unknown: remove nothing now (best effort)
        removed: set[tuple[str, str]] = set()
        for g in garbage:
            with contextlib.suppress(Failure):  # a store that refuses now: next time
                if self._remove(g, held):
                    removed.add((g.address, g.version))
        return removed

    def _remove(self, g: Garbage, held: set[str]) -> bool:
        if g.kind == "build":
            remove_tree(self.workdir.build_dir(g.version))
            return True
        if kinds.versioned(g.kind):
            return self.jobs.remove_version(g.namespace, g.kind, g.name, g.version, held)
        if kinds.is_service_kind(g.kind):
            return self.servers.remove_run(g.namespace, g.kind, g.name, g.version)
        return True


def _planning(step: Callable[[], T]) -> T:
    """Run a plan-time step; a store problem becomes a diagnostic (no traceback)."""
    try:
        return step()
    except Failure as exc:
        raise fail(exc.summary, exc.detail) from exc
