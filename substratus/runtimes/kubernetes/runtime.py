"""``KubernetesRuntime``: the ``Runtime`` that runs resources on a cluster (DESIGN §8).

Per kind (names in ``names``, objects in ``manifests``):

- build → a Kaniko Job: a git source is cloned at the commit resolved at plan time, a local
  directory is uploaded first (``upload``; skipped when the same content is there); pushes
  ``{registry}/{build}:{commit | contentHash[:16]}``; outputs ``image``, ``job`` (+ ``context``);
- dataset, model with a loader or trainer → a Job per run writing the version
  ``{artifacts}/{ns}/{kind}s/{name}/{version}``, sealed complete when it succeeds; outputs
  ``artifacts``, ``job``, ``image``;
- model with only a ``url`` → that location; outputs ``artifacts``;
- modelserver → Deployment + Service rolled out in place (a requested replacement restarts the
  pods); notebook → Pod + Service (``suspend`` deletes the pod, a requested replacement
  recreates it); outputs the object names, ``endpoint``, ``fields`` (the owned-field hashes
  refresh compares, see ``fields``) and, for a notebook, the uid of its token Secret.

Ownership (``ownership``, ``guard``): every object carries the identity of the state that makes
it (``RunRequest.owner``); apply never writes onto an object that is not the state's (refused
with what to do), destroy and garbage collection delete only the state's objects, with uid
preconditions (``cleanup``). ``conflicts`` finds, at plan time, the objects a plan would have to
take over (``conflicts`` module). Objects a resource keeps across runs are named after its stem,
which includes the workspace (``names.stem``). The ServiceAccounts pods run as
(``names.SERVICE_ACCOUNTS``, the original operator's names, which Workload Identity bindings
refer to) are shared by every state of a namespace: created when missing (a plain create: an
existing one — another state's, or an admin's with its annotations — is used as it is), never
changed, never deleted.

``refresh`` is ``refresh.Refresher`` (one LIST per kind per namespace, and one of the nodes);
``capacity()`` is what that refresh saw the nodes offer. Cluster errors become ``Failure``s
during apply and diagnostics while planning. The cluster is contacted on first use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from substratus.engine import kinds
from substratus.engine.attempts import FailedAttempt
from substratus.engine.diagnostic import Diagnostic, fail
from substratus.engine.failure import Failure
from substratus.engine.plan import Action
from substratus.engine.runtime import (
    Capacity,
    DeleteRequest,
    ExternalResource,
    Garbage,
    Held,
    LogRequest,
    Observation,
    Owner,
    PlannedRun,
    ResourceView,
    RunContext,
    RunRequest,
)
from substratus.engine.sensitive import split_path
from substratus.engine.statefile import ResourceRecord
from substratus.runtimes.contract import NOTEBOOK_PORT, SERVER_PORT, passed_env, quantization_env
from substratus.runtimes.kubernetes import (
    artifacts,
    builds,
    cleanup,
    conflicts,
    indexed,
    jobs,
    manifests,
    names,
    notebooks,
    servers,
)
from substratus.runtimes.kubernetes.check import check_resources
from substratus.runtimes.kubernetes.cluster import Cluster
from substratus.runtimes.kubernetes.counts import account
from substratus.runtimes.kubernetes.fields import owned
from substratus.runtimes.kubernetes.logs import KubeLogs
from substratus.runtimes.kubernetes.manifests import Mount, Workload
from substratus.runtimes.kubernetes.refresh import Refresher
from substratus.runtimes.kubernetes.volumes import Location, Store
from substratus.runtimes.kubernetes.waits import Timing

T = TypeVar("T")
_RUNS_A_JOB = (kinds.Workload.BUILD, kinds.Workload.JOB)  # a Kubernetes Job per run


class KubernetesRuntime:
    name = "kubernetes"

    def __init__(
        self,
        *,
        artifacts_url: str,
        cloud: str = "generic",
        registry: str | None = None,
        context: str | None = None,
        kubeconfig: str | None = None,
        workdir: Path = Path(".substratus"),
        timing: Timing | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        self.artifacts_url = artifacts_url
        self.cloud = cloud
        self.registry = (registry or "").rstrip("/")
        self.workdir = Path(workdir)
        self.timing = timing or Timing.from_env()
        self.cluster = cluster or Cluster(context, kubeconfig)
        self._accounts: set[tuple[str, str]] = set()
        self._accounts_lock = threading.Lock()
        self._capacity: Capacity | None = None

    @property
    def store(self) -> Store:
        try:
            return Store.parse(self.artifacts_url)
        except ValueError as exc:
            raise Failure(str(exc), "set `artifacts:` to gs://…, file://… or pvc://…") from exc

    # -- planning --------------------------------------------------------------------------------

    def check(self, resources: Sequence[ResourceView]) -> list[Diagnostic]:
        return check_resources(resources, self.artifacts_url, self.cloud, self.registry)

    def refresh(
        self, records: Mapping[str, ResourceRecord], owner: Owner = Owner()
    ) -> dict[str, Observation]:
        refresher = Refresher(self.cluster, owner)
        with account("refresh"):
            observed = _planning(lambda: refresher.observe(records))
        self._capacity = refresher.capacity
        return observed

    def conflicts(self, runs: Sequence[PlannedRun], owner: Owner) -> list[Diagnostic]:
        """The objects the plan's runs would have to take over (``conflicts``)."""
        with account("conflicts"):
            return _planning(lambda: conflicts.find(self.cluster, runs, owner))

    def capacity(self) -> Capacity | None:
        """What the nodes offered at the last ``refresh`` (None before one)."""
        return self._capacity

    def read_external(self, kind: str, namespace: str, name: str) -> ExternalResource | None:
        if not kinds.versioned(kind):
            return None
        with account("read external"):
            return _planning(lambda: self._read_external(kind, namespace, name))

    def _read_external(self, kind: str, namespace: str, name: str) -> ExternalResource | None:
        resource = self.store.resource(namespace, kind, name)
        url = artifacts.newest(resource.url)
        if url is not None:
            return ExternalResource(digest=url.rsplit("/", 1)[-1], outputs={"artifacts": url})
        done = [
            j
            for j in self.cluster.list("Job", namespace, names.address_selector(f"{kind}.{name}"))
            if jobs.state(j) == "succeeded"
        ]
        if not done:
            return None
        newest = max(done, key=lambda j: str((j.get("status") or {}).get("completionTime", "")))
        labels = newest["metadata"]["labels"]
        version = labels.get(names.VERSION) or labels[names.DIGEST]
        return ExternalResource(digest=version, outputs={"artifacts": resource.child(version).url})

    def intent(self, request: RunRequest) -> dict[str, Any]:
        kind, ns, ws = request.kind, request.namespace, request.owner.workspace
        if kinds.workload(kind, request.spec) in _RUNS_A_JOB:
            nodes = kinds.nodes(kind, request.spec)
            job = names.job_name(kind, request.name, request.run_version, nodes)
            return {"job": job, "namespace": ns}
        if kind == "modelserver":
            return {"deployment": names.server_name(request.name, ws), "namespace": ns}
        if kind == "notebook":
            return {"pod": names.notebook_name(request.name, ws), "namespace": ns}
        return {}

    # -- apply -----------------------------------------------------------------------------------

    def apply(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        with account(f"apply {request.kind}"):
            return self._apply(request, ctx)

    def _apply(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        if request.kind == "build":
            return self._build(request, ctx)
        if kinds.is_job(request.kind, request.spec):
            return self._job(request, ctx)
        if request.kind == "model":
            return {"artifacts": str(request.spec.get("url") or "")}
        if request.kind == "modelserver":
            return self._server(request, ctx)
        if request.kind == "notebook":
            return self._notebook(request, ctx)
        raise Failure(f"the kubernetes runtime does not know the kind {request.kind!r}")

    def _service_account(self, namespace: str, kind: str) -> None:
        """Create the ServiceAccount once per namespace and process (the first run of a kind
        creates it; the others, running at once, wait for that one request)."""
        key = (namespace, names.SERVICE_ACCOUNTS[kind])
        with self._accounts_lock:
            if key not in self._accounts:
                self.cluster.create(manifests.service_account(*key))  # None: exists; used as is
                self._accounts.add(key)

    def _image(self, request: RunRequest) -> str:
        container = request.spec.get("container") or {}
        image = container.get("image") or (request.inputs.get("build") or {}).get("image")
        if not image:
            raise Failure("no image to run", "its build did not record one")
        return str(image)

    def _input(self, request: RunRequest, role: str) -> str | None:
        url = (request.inputs.get(role) or {}).get("artifacts")
        if not url:
            return None
        try:
            Location.parse(str(url))
        except ValueError as exc:
            raise Failure(
                f"the {role} input is at {url}, which a pod cannot mount",
                "apply the input on the kubernetes runtime (gs://, file:// or pvc:// store)",
            ) from exc
        return str(url)

    def _mounts(self, request: RunRequest, artifacts_url: str) -> list[Mount]:
        """Its own artifacts read-write, and the inputs it has (data, model) read-only."""
        mounts = [Mount("artifacts", artifacts_url, False)]
        for role in ("data", "model"):
            url = self._input(request, role)
            if url:
                mounts.append(Mount(role, url, True))
        return mounts

    def _workload(
        self, request: RunRequest, mounts: list[Mount], owned_env: Mapping[str, str] | None = None
    ) -> Workload:
        res = kinds.resources(request.kind, request.spec)
        spot = bool((res or {}).get("spot"))
        if self.cloud == "kind" and res:  # laptops: only the GPU is requested (as the operator)
            res = {"gpu": res["gpu"]} if res.get("gpu") else None
        container = request.spec.get("container") or {}
        return Workload(
            address=request.address,
            kind=request.kind,
            namespace=request.namespace,
            name=request.name,
            digest=request.digest,
            image=self._image(request),
            cloud=self.cloud,
            command=container.get("command"),
            env=dict(container.get("env") or {}),
            params=kinds.params(request.kind, request.spec),
            resources=res,
            mounts=mounts,
            owned_env=dict(owned_env or {}),
            passed_env=passed_env(request.spec, os.environ),
            owner=request.owner,
            version=request.run_version,
            sensitive=_sensitive_keys(request),
            retries=kinds.retries(request.kind, request.spec),
            spot=spot,
        )

    def _job(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        ns, kind = request.namespace, request.kind
        version = self.store.version(ns, kind, request.name, request.run_version).url
        mounts = self._mounts(request, version)
        w = self._workload(request, mounts)
        nodes = kinds.nodes(kind, request.spec)
        name = names.job_name(kind, request.name, request.run_version, nodes)
        self._service_account(ns, kind)
        params = names.params_name(name)  # applied only if the Job's pods read it (``jobs``)
        owner, recorded = request.owner, _recorded(request)
        if nodes > 1:

            def attempt(number: int, failed: Sequence[FailedAttempt]) -> jobs.Attempt:
                job = manifests.job(w, name)
                service = indexed.spread(job, nodes, number, failed)
                return job, manifests.params_secret(w, params), service

            jobs.run_ranks(self.cluster, attempt, w.retries, ctx, self.timing, owner, recorded)
        else:
            job, secret = manifests.job(w, name), manifests.params_secret(w, params)
            jobs.run(self.cluster, job, secret, ctx, self.timing, owner, recorded)
        ctx.phase("recording the new version")
        sealed = artifacts.seal(version)
        out = {"artifacts": version, "job": name, "image": w.image}
        return {**out, "manifest": sealed} if sealed else out

    def _build(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        self._service_account(request.namespace, "build")
        return builds.build(
            self.cluster,
            self.store,
            self.registry,
            self.cloud,
            self.workdir,
            self.timing,
            request,
            ctx,
        )

    def _server(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        ns, spec = request.namespace, request.spec
        model = self._input(request, "model")
        if model is None:
            raise Failure("no model to serve")
        owned_env = {"PORT": str(SERVER_PORT), **quantization_env(spec)}
        w = self._workload(request, [Mount("model", model, True)], owned_env)
        name = names.server_name(request.name, request.owner.workspace)
        replicas = int(spec.get("replicas", 1))
        self._service_account(ns, "modelserver")
        dep, svc = servers.rollout(
            self.cluster,
            manifests.deployment(w, name, replicas),
            manifests.service(w, name, SERVER_PORT, "http-serve"),
            manifests.params_secret(w, names.params_name(name)),
            ctx,
            self.timing,
            request.owner,
            _recorded(request),
            restart=request.run_version if request.action is Action.REPLACE else "",
        )
        cleanup.drop_legacy_params(self.cluster, ns, name, request, ctx, self.timing)
        return {
            "deployment": name,
            "service": name,
            "params": names.params_name(name),
            "namespace": ns,
            "endpoint": f"http://{name}.{ns}.svc:{SERVER_PORT}",
            "image": w.image,
            "model": model,
            "replicas": replicas,
            "fields": {f"Deployment/{name}": owned(dep), f"Service/{name}": owned(svc)},
        }

    def _notebook(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        ns, spec, ws = request.namespace, request.spec, request.owner.workspace
        name, secret = names.notebook_name(request.name, ws), names.token_name(request.name, ws)
        work = self.store.notebook(ns, request.name).url
        out: dict[str, Any] = {
            "pod": name,
            "service": name,
            "namespace": ns,
            "artifacts": work,
            "token_secret": secret,
            "params": names.params_name(name),
            "endpoint": f"http://{name}.{ns}.svc:{NOTEBOOK_PORT}",
        }
        if kinds.suspended(request.kind, spec):
            claim = request.address if _recorded(request) else None
            notebooks.suspend(self.cluster, ns, name, ctx, self.timing, request.owner, claim)
            cleanup.drop_legacy_params(self.cluster, ns, name, request, ctx, self.timing)
            return {**out, "suspended": True}
        w = self._workload(request, self._mounts(request, work))
        self._service_account(ns, "notebook")
        pod, svc, token = notebooks.start(
            self.cluster,
            (
                manifests.token_secret(w, secret, ""),
                manifests.params_secret(w, names.params_name(name)),
                manifests.notebook_pod(w, name, secret),
                manifests.service(w, name, NOTEBOOK_PORT, "notebook"),
            ),
            ctx,
            self.timing,
            request.owner,
            _recorded(request),
            recreate=request.action is Action.REPLACE,
        )
        cleanup.drop_legacy_params(self.cluster, ns, name, request, ctx, self.timing)
        fields = {f"Pod/{name}": owned(pod), f"Service/{name}": owned(svc)}
        uid = token["metadata"]["uid"]
        return {**out, "suspended": False, "fields": fields, "token_uid": uid}

    # -- delete ----------------------------------------------------------------------------------

    def delete(self, request: DeleteRequest, ctx: RunContext) -> None:
        with account(f"delete {request.kind}"):
            cleanup.delete(self.cluster, self.store, self.timing, request, ctx)

    def logs(self, request: LogRequest, cancelled: threading.Event) -> Iterator[str]:
        return KubeLogs(self.cluster, min(self.timing.poll, 1.0)).logs(request, cancelled)

    def notebook_session(
        self, namespace: str, name: str, outputs: Mapping[str, Any], local_port: int
    ) -> Any:
        """A port-forward to the notebook pod and its file watcher (``session``), with the
        token of the Secret apply made for it (``notebooks.token``)."""
        from substratus.runtimes.kubernetes.session import KubeNotebookSession

        if outputs.get("suspended"):
            raise Failure(f"notebook {namespace}/{name} is suspended")
        token = notebooks.token(self.cluster, namespace, f"notebook.{name}", outputs)
        pod = str(outputs.get("pod") or names.notebook_name(name))
        return KubeNotebookSession(self.cluster, namespace, pod, token, local_port)

    def hold(self, owner: Owner, held: Sequence[Held]) -> None:
        artifacts.set_holds(self.store.url, owner, held)

    def collect_garbage(self, owner: Owner, garbage: Sequence[Garbage]) -> set[tuple[str, str]]:
        """The Jobs and artifact versions a state no longer needs (``cleanup``)."""
        with account("collect garbage"):
            return cleanup.collect_garbage(self.cluster, self.store, owner, garbage)


def _sensitive_keys(request: RunRequest) -> frozenset[str]:
    """The keys of the params the workload is given that are marked sensitive."""
    section = kinds.params_path(request.kind, request.spec)
    found = (split_path(p) for p in request.sensitive)
    return frozenset(p[-1] for p in found if p is not None and p[:-1] == section)


def _recorded(request: RunRequest) -> bool:
    """Whether the state records the resource (a completed run, or the one being adopted)."""
    return request.prior_outputs is not None or request.intent is not None


def _planning(step: Callable[[], T]) -> T:
    """Run a plan-time step; cluster and store problems become diagnostics."""
    try:
        return step()
    except Failure as exc:
        raise fail(exc.summary, exc.detail) from exc
