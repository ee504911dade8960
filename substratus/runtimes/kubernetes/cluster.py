"""``Cluster``: the connection to one Kubernetes API server, the only module that imports the
``kubernetes`` client (DESIGN §2, §8).

Access follows kubectl: ``KUBECONFIG`` (``:``-separated files are merged) or ``~/.kube/config``
with ``context`` (else its current context), else the in-cluster service account. The connection
is made on first use, so validating a configuration never touches a cluster.

Objects are plain dicts. Writes never land on an object other than the one the caller checked:

- ``apply(obj, uid)`` is server-side apply (field manager ``substratus``, forced: substratus
  owns what it declares) onto the object with that uid: the uid travels in the patch, so the API
  server refuses it when the object was deleted (409) or replaced (422) meanwhile;
- ``merge(kind, ns, name, uid, patch)`` is a JSON merge patch of a few fields, with the uid
  in the patch as ``apply`` has it;
- ``apply_new(obj)`` is server-side apply that only creates: its ``metadata.resourceVersion`` is
  one no stored object can have, so the API server refuses it (409, answered ``None``) when an
  object of that name exists, and an absent one is created atomically (the resource version of a
  new object is the store's);
- ``create(obj)`` is a plain create (POST, ``None`` when the name is taken), for objects
  substratus never changes afterwards (a notebook's token Secret, shared ServiceAccounts);
- ``delete(kind, ns, name, uid=…)`` carries ``preconditions.uid``: a same-named replacement is
  never deleted (answered ``"replaced"``; ``"gone"`` when there is nothing to delete).

``list`` reads a label-selected collection in one request (or in pages); ``get`` answers ``None``
for a missing object; both can ask for metadata only (``PartialObjectMetadata``: names, labels,
uids — never a Secret's data). Transient failures (429, 5xx, resets) are retried with backoff
(``engine.backoff``) — every call here is idempotent. Everything else is a ``Failure`` whose
message says what failed and what to do: unreachable server, 401, 403 (with the permission the
API server says is missing), 404 namespace, 409, 422 (with the fields), quota. ``requests``
and ``by_verb`` count the HTTP requests sent, ``counts`` also per step (``counts``, for
``bench/refresh.py``).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from substratus.engine.backoff import Backoff, GaveUp, retry
from substratus.engine.failure import Failure
from substratus.runtimes.kubernetes import names
from substratus.runtimes.kubernetes.counts import Counts

RBAC_HINT = (
    "Grant the Role in examples/kubernetes/rbac.yaml to this user or service account in the "
    "namespace (kubectl apply -n NAMESPACE -f examples/kubernetes/rbac.yaml, then bind it)."
)
RETRIES = 5
# 0.4 s doubling to at most 5 s (±20 %), at most RETRIES requests in all
REQUESTS = Backoff(first=0.4, maximum=5.0, attempts=RETRIES)
TIMEOUT = (10.0, 60.0)  # connect, read
KINDS: dict[str, tuple[str, str]] = {
    "Job": ("/apis/batch/v1", "jobs"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "Pod": ("/api/v1", "pods"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Event": ("/api/v1", "events"),
}
JSON = "application/json"
METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
# No stored object has this resource version (etcd revisions are far smaller): an apply that
# carries it can only create.
NEVER_STORED = "9223372036854775807"
Deleted = Literal["deleted", "gone", "replaced"]


class _Answer(Exception):
    """An error answer of the API server (what ``request`` does not return)."""

    def __init__(self, status: int, data: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.data = status, data


def _transient(exc: BaseException) -> bool:
    """429, 5xx, and a connection error the client did not retry already (``MaxRetryError``)."""
    import urllib3

    if isinstance(exc, _Answer):
        return exc.status == 429 or exc.status >= 500
    if isinstance(exc, urllib3.exceptions.MaxRetryError):
        return False
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError)


def _path(kind: str, namespace: str, name: str = "", sub: str = "") -> str:
    prefix, plural = KINDS[kind]
    path = f"{prefix}/namespaces/{urllib.parse.quote(namespace)}/{plural}"
    if name:
        path += f"/{urllib.parse.quote(name)}"
    return path + (f"/{sub}" if sub else "")


def _describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', 'object')} {meta.get('namespace', '')}/{meta.get('name', '')}"


class Cluster:
    def __init__(self, context: str | None = None, kubeconfig: str | None = None) -> None:
        self.context = context
        self.kubeconfig = kubeconfig
        self.counts = Counts()
        self._api: Any = None
        self._lock = threading.Lock()

    @property
    def requests(self) -> int:
        """HTTP requests sent so far (``counts``)."""
        return self.counts.requests

    @property
    def by_verb(self) -> Counter[str]:
        return self.counts.by_verb

    # -- connection ------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"context {self.context!r}" if self.context else "the current context"

    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                self._api = self._connect()
            return self._api

    def _connect(self) -> Any:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        files = self.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        present = [p for p in files.split(os.pathsep) if p and Path(p).expanduser().is_file()]
        try:
            if present:
                api = config.new_client_from_config(
                    config_file=os.pathsep.join(present),
                    context=self.context,
                    persist_config=False,
                )  # type: ignore[no-untyped-call]
            elif os.environ.get("KUBERNETES_SERVICE_HOST") and not self.context:
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
                api = client.ApiClient(cfg)
            else:
                raise Failure(
                    "no Kubernetes configuration found",
                    f"{files} does not exist and this is not a pod in a cluster. Set KUBECONFIG "
                    "or create a context (e.g. gcloud container clusters get-credentials, "
                    "kind create cluster).",
                )
        except ConfigException as exc:
            raise Failure(
                f"cannot use the Kubernetes configuration ({self.where})",
                f"{exc}. Check --context / the `kubernetes.context` Project setting and "
                f"`kubectl config get-contexts`.",
            ) from exc
        api.configuration.retries = 1
        return api

    def api(self) -> Any:
        """The connected ``kubernetes.client.ApiClient`` (connecting on first use)."""
        return self._client()

    @property
    def server(self) -> str:
        return str(self._client().configuration.host)

    # -- requests --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
        what: str = "",
        accept: str = JSON,
    ) -> Any:
        """One API call with retries; the decoded JSON (``None`` on 404 of a GET/DELETE)."""
        import urllib3

        api = self._client()
        headers = {"Accept": accept, "Content-Type": content_type}
        params = list((query or {}).items())
        # the client serialises JSON bodies itself; other content types are sent as text
        is_json = "json" in content_type  # as the client's own test (merge patches too)
        payload = body if is_json or body is None else json.dumps(body)

        def once() -> Any:
            m, url, hdrs, _, _ = api.param_serialize(
                method,
                path,
                query_params=params or None,
                header_params=dict(headers),
                auth_settings=["BearerToken"],
            )
            self.counts.add(method)
            resp = api.call_api(m, url, header_params=hdrs, body=payload, _request_timeout=TIMEOUT)
            resp.read()
            status = int(resp.status)
            data: Any = None
            if resp.data:
                try:
                    data = json.loads(resp.data)
                except ValueError:
                    data = {"message": resp.data.decode(errors="replace")[:500]}
            if status < 300:
                return data
            if status == 404 and method in ("GET", "DELETE"):
                return None
            raise _Answer(status, data or {})

        try:
            return retry(once, REQUESTS, retryable=_transient)
        except GaveUp as exc:
            raise self._failure(exc.last, method, what or path) from exc.last
        except (_Answer, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._failure(exc, method, what or path) from exc

    def _failure(self, exc: BaseException, method: str, what: str) -> Failure:
        """The ``Failure`` of a request that failed with ``exc`` (an answer or no answer)."""
        if isinstance(exc, _Answer):
            return self._error(exc.status, exc.data, method, what)
        reason = getattr(exc, "reason", None) or exc
        return Failure(
            f"cannot reach the Kubernetes API server at {self._client().configuration.host}",
            f"{reason}. Check that the cluster is running and that {self.where} is the "
            "right one (--context, KUBECONFIG).",
            retryable=True,
        )

    def _error(self, status: int, data: dict[str, Any], method: str, what: str) -> Failure:
        message = str(data.get("message") or data.get("reason") or f"HTTP {status}")
        if status == 401:
            return Failure(
                f"the Kubernetes API server rejected the credentials of {self.where} "
                "(401 Unauthorized)",
                "Refresh them (e.g. gcloud container clusters get-credentials, or a new token) "
                "and try again.",
                status=status,
            )
        if status == 403 and "exceeded quota" in message:
            return Failure(
                f"quota exceeded: {message}",
                "Raise the namespace's ResourceQuota or ask for fewer resources.",
                status=status,
            )
        if status == 403:
            return Failure(f"permission denied: {message}", RBAC_HINT, status=status)
        if status == 404:
            return Failure(
                f"{what}: {message}",
                "Create the namespace first (kubectl create namespace NAME) or set "
                "`kubernetes.namespace` / --namespace.",
                status=status,
            )
        if status == 409:
            return Failure(
                f"conflict on {what}: {message}",
                "Another client changed it at the same time; run apply again.",
                status=status,
            )
        if status == 422:
            causes = (data.get("details") or {}).get("causes") or []
            fields = "; ".join(f"{c.get('field', '?')}: {c.get('message', '')}" for c in causes)
            return Failure(
                f"Kubernetes rejected {what}: {message}",
                fields or "Fix the resource's spec and plan again.",
                status=status,
            )
        transient = status == 429 or status >= 500  # still failing after the retries
        return Failure(
            f"{method} {what} failed ({status}): {message}", "", status=status, retryable=transient
        )

    # -- objects ---------------------------------------------------------------------------------

    def apply(self, obj: dict[str, Any], uid: str) -> dict[str, Any]:
        """Server-side apply onto the object ``uid`` (see the module docstring)."""
        meta = obj["metadata"]
        body = {**obj, "metadata": {**meta, "uid": uid}}
        try:
            return self._apply(body)
        except Failure as exc:
            replaced = exc.status == 422 and "metadata.uid" in exc.summary
            if exc.status != 409 and not replaced:
                raise
            raise Failure(
                f"{_describe(obj)} was deleted or replaced while substratus applied it",
                "Someone else changed it at the same time; plan and apply again.",
                status=409,
            ) from exc

    def merge(
        self, kind: str, namespace: str, name: str, uid: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """A JSON merge patch of a few fields onto the object ``uid`` (refused, like ``apply``,
        when it was deleted or replaced): cheaper than applying the whole object again."""
        body = {**patch, "metadata": {**(patch.get("metadata") or {}), "uid": uid}}
        what = f"{kind} {namespace}/{name}"
        query = {"fieldManager": names.MANAGER}
        try:
            out = self.request(
                "PATCH",
                _path(kind, namespace, name),
                query,
                body,
                "application/merge-patch+json",
                what,
            )
        except Failure as exc:
            replaced = exc.status == 422 and "metadata.uid" in exc.summary
            if exc.status not in (404, 409) and not replaced:
                raise
            raise Failure(
                f"{what} was deleted or replaced while substratus changed it",
                "Someone else changed it at the same time; plan and apply again.",
                status=409,
            ) from exc
        return dict(out or {})

    def apply_new(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Server-side apply that only creates; ``None`` when the name is taken."""
        body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": NEVER_STORED}}
        try:
            return self._apply(body)
        except Failure as exc:
            if exc.status == 409:
                return None
            raise

    def _apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        path = _path(obj["kind"], meta["namespace"], meta["name"])
        query = {"fieldManager": names.MANAGER, "force": "true"}
        out = self.request(
            "PATCH", path, query, obj, "application/apply-patch+yaml", _describe(obj)
        )
        return dict(out or {})

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Create an object; ``None`` when one with that name already exists."""
        meta = obj["metadata"]
        try:
            out = self.request(
                "POST", _path(obj["kind"], meta["namespace"]), None, obj, what=_describe(obj)
            )
        except Failure as exc:
            if exc.status == 409:
                return None
            raise
        return dict(out or {})

    def get(
        self, kind: str, namespace: str, name: str, metadata_only: bool = False
    ) -> dict[str, Any] | None:
        out = self.request(
            "GET",
            _path(kind, namespace, name),
            what=f"{kind} {namespace}/{name}",
            accept=METADATA if metadata_only else JSON,
        )
        return dict(out) if out is not None else None

    def list(
        self,
        kind: str,
        namespace: str,
        selector: str = names.SELECTOR,
        fields: str = "",
        page: int | None = None,
        metadata_only: bool = False,
    ) -> list[dict[str, Any]]:
        """Every object of ``kind`` in ``namespace`` matching the selectors. ``page=None`` asks
        for one response (served from the API server's watch cache: one request whatever the
        count); a page size pages with ``continue`` tokens. ``metadata_only``: each object's
        ``metadata`` alone."""
        items: list[dict[str, Any]] = []
        query = {"labelSelector": selector} if selector else {}
        if page:
            query["limit"] = str(page)
        if fields:
            query["fieldSelector"] = fields
        while True:
            out = (
                self.request(
                    "GET",
                    _path(kind, namespace),
                    query,
                    what=f"{KINDS[kind][1]} in namespace {namespace}",
                    accept=METADATA_LIST if metadata_only else JSON,
                )
                or {}
            )
            if out.get("kind") == "Status":  # a 404 of the namespace itself
                break
            items.extend(out.get("items") or [])
            token = (out.get("metadata") or {}).get("continue")
            if not token:
                return items
            query["continue"] = token
        return items

    def delete(
        self,
        kind: str,
        namespace: str,
        name: str,
        propagation: str = "Background",
        uid: str = "",
    ) -> Deleted:
        """Delete an object — only the one with ``uid`` when given (see the module docstring)."""
        body: dict[str, Any] = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": propagation,
        }
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            out = self.request(
                "DELETE",
                _path(kind, namespace, name),
                None,
                body,
                what=f"{kind} {namespace}/{name}",
            )
        except Failure as exc:
            if uid and exc.status == 409:
                return "replaced"
            raise
        return "deleted" if out is not None else "gone"

    def log(self, namespace: str, pod: str, container: str, tail: int = 30) -> str:
        """The last lines of a container's log ("" when there is none to read)."""
        api = self._client()
        m, url, hdrs, _, _ = api.param_serialize(
            "GET",
            _path("Pod", namespace, pod, "log"),
            query_params=[("container", container), ("tailLines", str(tail))],
            header_params={"Accept": "application/json, */*"},
            auth_settings=["BearerToken"],
        )
        self.counts.add("GET")
        try:
            resp = api.call_api(m, url, header_params=hdrs, _request_timeout=TIMEOUT)
            resp.read()
        except Exception:  # a log is a courtesy: never turn its absence into a failure
            return ""
        if int(resp.status) >= 300 or not resp.data:
            return ""
        return str(resp.data.decode(errors="replace"))
