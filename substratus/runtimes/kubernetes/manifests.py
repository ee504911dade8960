"""The Kubernetes objects of each resource, as plain dicts ready for server-side apply (DESIGN §8).

A ``Workload`` is everything a pod needs (image, command, env, params, resources, mounts); the
functions here turn it into the original operator's objects so existing images keep working:

- params → ``params.json``, mounted at ``/content/params.json``, and ``PARAM_*`` env: a plain
  ``value``, except for the params marked sensitive (``Workload.sensitive``), whose variables
  read the params Secret (``params_secret``, key = the variable's name), so no sensitive value
  is ever in a pod spec or a ConfigMap. ``params.json`` is in that Secret too, except for a
  Job whose params are none of them sensitive and fit an annotation (``params_inline``): its
  pod template carries the text (annotation ``names.PARAMS``) and a downward API volume makes
  the file of it, so the Job is one object, created by one request, with nothing to wait for
  before its pods may start (no Secret, no suspend and release: ``jobs.run``);
- container env ``${{ secrets.NAME.KEY }}`` → ``secretKeyRef``; ``CONTENT_DIR=/content``; the
  operator's variables the workload passes (``container.passEnv``, ``runtimes.contract``) as
  plain values taken when it is applied — nothing else of the operator's environment;
- mounts (``volumes.mount``): ``/content/data`` and ``/content/model`` read-only,
  ``/content/artifacts`` read-write;
- resources and GPU and spot scheduling (``gpu``); ``fsGroup: 3003`` as the GCS FUSE mounts expect;
- Job (``backoffLimit`` = ``spec.retries``, with a ``podFailurePolicy`` under which a
  disruption does not count, and the command wrapped to count attempts: ``job``),
  Deployment + Service on 8080 with readiness ``GET /``, notebook Pod + Service on 8888
  (readiness ``GET /api``, ``NOTEBOOK_TOKEN`` from a Secret), Kaniko build Job (git clone init
  container or an uploaded tarball).

Every object is labelled and annotated by ``names`` with the workload's ``owner`` (the state
that makes it) and, on the object itself, the ``version`` of the run; selectors of Deployments
and Services include the owner's identity, so the objects of two workspaces or states with the
same addresses never select each other's pods. Pure functions; no I/O.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from substratus.engine.runtime import Owner
from substratus.engine.spec import SECRET_REF
from substratus.runtimes.contract import (
    ATTEMPT_ENV,
    ATTEMPT_FILE,
    CONTENT,
    NOTEBOOK_PORT,
    SERVER_PORT,
    param_env,
)
from substratus.runtimes.kubernetes import gpu, names, volumes

KANIKO_IMAGE = "gcr.io/kaniko-project/executor:latest"
GIT_IMAGE = "alpine/git"
GCLOUD_IMAGE = "gcr.io/google.com/cloudsdktool/cloud-sdk:alpine"
INLINE_PARAMS_BYTES = 64 * 1024  # a Job's params.json in its pod template up to this size
CONTAINER_NAMES = {
    "build": "builder",
    "dataset": "load",
    "model": "model",
    "modelserver": "serve",
    "notebook": "notebook",
}
ROLES = {
    "build": "build",
    "dataset": "run",
    "model": "run",
    "modelserver": "serve",
    "notebook": "notebook",
}


@dataclass(frozen=True)
class Mount:
    role: str  # data | model | artifacts
    url: str  # store directory (gs://, file://, pvc://)
    read_only: bool


@dataclass(frozen=True)
class Workload:
    address: str
    kind: str
    namespace: str
    name: str
    digest: str
    image: str
    cloud: str
    command: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # the container's env (secret refs)
    params: Mapping[str, Any] = field(default_factory=dict)
    resources: Mapping[str, Any] | None = None
    mounts: Sequence[Mount] = ()
    owned_env: Mapping[str, str] = field(default_factory=dict)  # set by substratus, applied last
    passed_env: Mapping[str, str] = field(default_factory=dict)  # contract.passed_env, first
    owner: Owner = field(default_factory=Owner)  # the state that makes it
    version: str = ""  # the run (RunRequest.version) that applies it
    sensitive: frozenset[str] = frozenset()  # top-level keys of ``params`` marked sensitive
    retries: int = 0  # a job's spec.retries (kinds.retries)
    spot: bool = False  # resources.spot: spot nodes only


def _labels(w: Workload, role: str = "") -> dict[str, str]:
    return names.labels(w.address, w.digest, role or ROLES[w.kind], w.owner)


def metadata(w: Workload, name: str, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    labels = _labels(w)
    if w.version:
        labels[names.VERSION] = names.label_value(w.version)
    return {
        "name": name,
        "namespace": w.namespace,
        "labels": labels,
        "annotations": {**names.object_annotations(w.address, w.digest, w.owner), **(extra or {})},
    }


def sensitive_env(w: Workload) -> dict[str, str]:
    """The ``PARAM_*`` variables of the sensitive params, with their values."""
    marked = param_env({k: None for k in w.params if k in w.sensitive})
    return {k: v for k, v in param_env(w.params).items() if k in marked}


def env_list(w: Workload, params: str | None) -> list[dict[str, Any]]:
    """Passed variables < PARAM_* < container env < substratus' own variables; one entry per
    name. Nothing else of the operator's environment reaches a pod (``runtimes.contract``).
    A sensitive param's variable reads the key of its name in the params Secret ``params``."""
    merged: dict[str, dict[str, Any]] = {}
    for key, value in w.passed_env.items():
        merged[key] = {"name": key, "value": value}
    hidden = sensitive_env(w)
    for key, value in param_env(w.params).items():
        if key in hidden:
            ref = {"secretKeyRef": {"name": params, "key": key}}
            merged[key] = {"name": key, "valueFrom": ref}
        else:
            merged[key] = {"name": key, "value": value}
    for key, value in w.env.items():
        m = SECRET_REF.match(value)
        if m:
            ref = {"secretKeyRef": {"name": m.group(1), "key": m.group(2)}}
            merged[key] = {"name": key, "valueFrom": ref}
        else:
            merged[key] = {"name": key, "value": value}
    for key, value in {"CONTENT_DIR": CONTENT, **w.owned_env}.items():
        merged[key] = {"name": key, "value": value}
    return list(merged.values())


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def params_text(w: Workload) -> str:
    """The text of ``params.json``."""
    return json.dumps(dict(w.params), indent=2, sort_keys=True) + "\n"


def params_inline(w: Workload) -> bool:
    """Whether a Job's ``params.json`` travels in its pod template rather than a Secret: none
    of its params is sensitive, and the text fits ``INLINE_PARAMS_BYTES`` (all the annotations
    of an object share 256 KiB)."""
    return not w.sensitive and len(params_text(w).encode()) <= INLINE_PARAMS_BYTES


def params_secret(w: Workload, name: str) -> dict[str, Any]:
    """The params Secret: ``params.json`` and, under their own names, the ``PARAM_*``
    variables of the sensitive params (``data``, base64: server-side apply owns each key)."""
    data = {"params.json": _b64(params_text(w))}
    data.update((k, _b64(v)) for k, v in sensitive_env(w).items())
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(w, name),
        "type": "Opaque",
        "data": data,
    }


def mounted_secrets(obj: Mapping[str, Any]) -> set[str]:
    """The names of the Secrets the pods of ``obj`` (a Job, Deployment: any object with a pod
    template) mount as volumes."""
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return {str(v["secret"].get("secretName")) for v in spec.get("volumes") or () if "secret" in v}


def _params_volume(params: str | None) -> dict[str, Any]:
    """The volume ``params.json`` comes from: the Secret ``params``, or (None) the pod's own
    annotation ``names.PARAMS`` through the downward API."""
    if params is not None:
        return {"name": "params", "secret": {"secretName": params}}
    ref = {"fieldPath": f"metadata.annotations['{names.PARAMS}']"}
    return {"name": "params", "downwardAPI": {"items": [{"path": "params.json", "fieldRef": ref}]}}


def _container(w: Workload, params: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    vols: list[dict[str, Any]] = [_params_volume(params)]
    mounts: list[dict[str, Any]] = [
        {"name": "params", "mountPath": f"{CONTENT}/params.json", "subPath": "params.json"}
    ]
    for m in w.mounts:
        vol, vm = volumes.mount(m.role, m.url, m.read_only)
        vols.append(vol)
        mounts.append(vm)
    c: dict[str, Any] = {"name": CONTAINER_NAMES[w.kind], "image": w.image}
    if w.command:
        c["command"] = attempt_command(w.command) if w.retries else list(w.command)
    c["env"] = env_list(w, params)
    c["volumeMounts"] = mounts
    res = gpu.container_resources(w.resources)
    if res:
        c["resources"] = res
    return c, vols


def pod_template(w: Workload, params: str | None, restart: str) -> dict[str, Any]:
    """The pod of a workload whose ``params.json`` is in the Secret ``params`` (None: in the
    template, ``params_inline``)."""
    container, vols = _container(w, params)
    annotations = {
        "kubectl.kubernetes.io/default-container": container["name"],
        **volumes.pod_annotations([m.url for m in w.mounts]),
    }
    if params is None:
        annotations[names.PARAMS] = params_text(w)
    spec: dict[str, Any] = {
        "serviceAccountName": names.SERVICE_ACCOUNTS[w.kind],
        "securityContext": {"fsGroup": 3003},
        "containers": [container],
        "volumes": vols,
        **gpu.scheduling(w.resources, w.cloud, w.spot),
    }
    if restart:
        spec["restartPolicy"] = restart
    meta = {
        "labels": _labels(w),
        "annotations": {**names.object_annotations(w.address, w.digest, w.owner), **annotations},
    }
    return {"metadata": meta, "spec": spec}


# Counts the starts of a job's pod in its artifacts (they outlive the pod), exports the count as
# SUBSTRATUS_ATTEMPT and runs the command: a pod cannot learn its attempt otherwise (no field of
# the downward API counts a Job's pods). One file per rank of an Indexed Job.
_ATTEMPT_DIR, _ATTEMPT_NAME = ATTEMPT_FILE.split("/")
ATTEMPT_SCRIPT = (
    f'd="${{CONTENT_DIR:-/content}}/artifacts/{_ATTEMPT_DIR}"; '
    f'f="$d/{_ATTEMPT_NAME}${{JOB_COMPLETION_INDEX:+-$JOB_COMPLETION_INDEX}}"; '
    'n=$(cat "$f" 2>/dev/null); case "$n" in ""|*[!0-9]*) n=0;; esac; n=$((n + 1)); '
    f'mkdir -p "$d" && echo "$n" > "$f"; export {ATTEMPT_ENV}="$n"; exec "$@"'
)


def attempt_command(command: Sequence[str]) -> list[str]:
    """``command`` run through ``ATTEMPT_SCRIPT`` (``/bin/sh``): its attempt counted."""
    return ["/bin/sh", "-c", ATTEMPT_SCRIPT, "substratus-attempt", *command]


def pod_failure_policy(container: str) -> dict[str, Any]:
    """A disruption (preemption, eviction, node drain: the pod's ``DisruptionTarget``) starts
    the pod again without counting against ``backoffLimit``; a command that cannot run at all
    (126: not executable, 127: not found) fails the Job at once; other failures count."""
    return {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": container, "operator": "In", "values": [126, 127]},
            },
        ]
    }


def job(w: Workload, name: str) -> dict[str, Any]:
    """A Dataset's or Model's run: ``backoffLimit`` = ``spec.retries``; with retries, the
    ``pod_failure_policy`` (which needs the pods' ``restartPolicy: Never``). Its params are in
    the template when ``params_inline``, else in the Secret ``params_name``."""
    template = pod_template(w, None if params_inline(w) else names.params_name(name), "Never")
    spec: dict[str, Any] = {"backoffLimit": w.retries, "template": template}
    if w.retries:
        spec["podFailurePolicy"] = pod_failure_policy(CONTAINER_NAMES[w.kind])
    else:  # one attempt: the workload's contract variable all the same
        template["spec"]["containers"][0]["env"].append({"name": ATTEMPT_ENV, "value": "1"})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(w, name),
        "spec": spec,
    }


def _selector(w: Workload) -> dict[str, str]:
    return {
        names.ADDRESS: names.label_address(w.address),
        names.ROLE: ROLES[w.kind],
        **names.identity_labels(w.owner),
    }


def deployment(w: Workload, name: str, replicas: int) -> dict[str, Any]:
    template = pod_template(w, names.params_name(name), "")
    container = template["spec"]["containers"][0]
    container["ports"] = [{"name": "http-serve", "containerPort": SERVER_PORT}]
    container["readinessProbe"] = {"httpGet": {"path": "/", "port": "http-serve"}}
    template["metadata"]["labels"].update(_selector(w))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(w, name),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _selector(w)},
            "template": template,
        },
    }


def service(w: Workload, name: str, port: int, target: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(w, name),
        "spec": {
            "selector": _selector(w),
            "ports": [{"name": "http", "port": port, "targetPort": target}],
        },
    }


def notebook_pod(w: Workload, name: str, token_secret: str) -> dict[str, Any]:
    template = pod_template(w, names.params_name(name), "Always")
    container = template["spec"]["containers"][0]
    container["env"].append(
        {
            "name": "NOTEBOOK_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": token_secret, "key": "token"}},
        }
    )
    container["ports"] = [{"name": "notebook", "containerPort": NOTEBOOK_PORT}]
    container["readinessProbe"] = {"httpGet": {"path": "/api", "port": "notebook"}}
    template["metadata"]["labels"].update(_selector(w))
    meta = metadata(w, name)
    meta["labels"].update(template["metadata"]["labels"])
    meta["annotations"].update(template["metadata"]["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}


def token_secret(w: Workload, name: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(w, name),
        "type": "Opaque",
        "stringData": {"token": token},
    }


def service_account(namespace: str, name: str) -> dict[str, Any]:
    """A ServiceAccount shared by every state of the namespace: no owner identity."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {names.MANAGED_BY: names.MANAGER},
        },
    }


@dataclass(frozen=True)
class BuildSource:
    """What Kaniko builds: a git commit (``git_url``) or an uploaded tarball (``tarball``)."""

    git_url: str = ""
    commit: str = ""
    path: str = ""
    tarball: str = ""  # gs://…, file://… or pvc://… of a .tar.gz


def kaniko_job(w: Workload, name: str, source: BuildSource) -> dict[str, Any]:
    """The build Job: Kaniko pushes ``w.image``; ``w.resources`` None means no requests (kind)."""
    context, vols, mounts, init = _kaniko_context(source)
    args = [
        *context,
        f"--destination={w.image}",
        "--cache=true",
        "--compressed-caching=false",
        "--log-format=text",
        "--log-timestamp=false",
    ]
    if w.cloud == "gcp":  # workload identity must be ready before Kaniko checks push access
        init.append(_workload_identity_check())
    builder: dict[str, Any] = {"name": "builder", "image": KANIKO_IMAGE, "args": args}
    if mounts:
        builder["volumeMounts"] = mounts
    if w.resources:
        builder["resources"] = {
            "requests": {"cpu": "2", "memory": "12Gi", "ephemeral-storage": "100Gi"}
        }
    spec: dict[str, Any] = {
        "serviceAccountName": names.SERVICE_ACCOUNTS["build"],
        "restartPolicy": "Never",
        "securityContext": {"runAsUser": 0, "runAsGroup": 0, "fsGroup": 3003},
        "containers": [builder],
    }
    if init:
        spec["initContainers"] = init
    if vols:
        spec["volumes"] = vols
    meta = {
        "labels": _labels(w, "build"),
        "annotations": {
            **names.object_annotations(w.address, w.digest, w.owner),
            "kubectl.kubernetes.io/default-container": "builder",
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(w, name, {"image": w.image}),
        "spec": {"backoffLimit": 1, "template": {"metadata": meta, "spec": spec}},
    }


Mounts = list[dict[str, Any]]


def _kaniko_context(source: BuildSource) -> tuple[list[str], Mounts, Mounts, Mounts]:
    """Kaniko's context arguments, and the volumes, mounts and init containers they need."""
    vols: Mounts = []
    mounts: Mounts = []
    if source.git_url:
        vols.append({"name": "workspace", "emptyDir": {}})
        mounts.append({"name": "workspace", "mountPath": "/workspace"})
        clone = (
            'git clone --quiet --no-checkout "$GIT_URL" /workspace && '
            'git -C /workspace checkout --quiet --detach "$GIT_COMMIT"'
        )
        init = {
            "name": "git-clone",
            "image": GIT_IMAGE,
            "command": ["sh", "-c", clone],
            "env": [
                {"name": "GIT_URL", "value": source.git_url},
                {"name": "GIT_COMMIT", "value": source.commit},
            ],
            "volumeMounts": list(mounts),
        }
        args = ["--context=dir:///workspace"]
        if source.path.strip("/"):
            args.append(f"--context-sub-path={source.path.strip('/')}")
        return args, vols, mounts, [init]
    loc = volumes.Location.parse(source.tarball)
    if loc.scheme == "gs":
        return [f"--context={source.tarball}"], vols, mounts, []
    if loc.scheme == "file":  # mount the tarball's directory, read the file
        directory, _, inside = loc.root.rpartition("/")
        loc = volumes.Location("file", directory or "/", "")
    else:
        inside, loc = loc.key, volumes.Location(loc.scheme, loc.root, "")
    vol, vm = volumes.mount("context", loc.url, True)
    vm["mountPath"] = "/context"
    return [f"--context=tar:///context/{inside}"], [vol], [vm], []


def _workload_identity_check() -> dict[str, Any]:
    probe = (
        "for i in $(seq 1 30); do curl -sf -H 'Metadata-Flavor: Google' "
        "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/"
        "token >/dev/null && exit 0; sleep 2; done; exit 1"
    )
    return {
        "name": "gcp-workload-identity-readiness-check",
        "image": GCLOUD_IMAGE,
        "command": ["sh", "-c", probe],
    }
