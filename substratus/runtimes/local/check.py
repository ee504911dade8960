"""What the local runtime cannot run: diagnostics for ``LocalRuntime.check`` (pure, no I/O).

One error per problem, each with the resource ``address`` and the field ``path``:
an image-only container (no local process can run an image), a job or server without a
``command`` (notebooks default to ``notebook.sh``), env values that reference Kubernetes Secrets
(never readable here), a Model ``url`` that is not a local path, and a ModelServer with
``replicas`` above 1: the local runtime runs one process per server (N processes cannot share one
port), so a plan that promised N replicas — and an estimate that billed N — would not be what
runs. ``replicas: 0`` (stopped) and ``1`` are fine. ``resources.spot`` is a warning, not an
error: it has no effect here (the plan notes it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from substratus.engine import kinds
from substratus.engine.diagnostic import Diagnostic
from substratus.engine.runtime import ResourceView
from substratus.engine.spec import secret_refs
from substratus.runtimes.local.artifacts import local_path

_USE_KUBERNETES = "or use runtime: kubernetes"


def _container(view: ResourceView, container: Mapping[str, Any]) -> list[Diagnostic]:
    where = {"address": view.address}
    out = []
    image = container.get("image")
    if image:
        out.append(
            Diagnostic.error(
                f"container image {image} cannot run on the local runtime",
                f"give a `local:` or `git:` source and a `command`, {_USE_KUBERNETES}",
                path="spec.container.image",
                **where,
            )
        )
    elif not container.get("command") and view.kind != "notebook":
        out.append(
            Diagnostic.error(
                "the local runtime needs a command to run",
                "set spec.container.command: the local runtime runs it in the build context "
                f"directory as an image runs its entrypoint, {_USE_KUBERNETES}",
                path="spec.container.command",
                **where,
            )
        )
    env = {str(k): str(v) for k, v in (container.get("env") or {}).items()}
    for key, (secret, item) in sorted(secret_refs(env).items()):
        out.append(
            Diagnostic.error(
                f"env {key} references the Kubernetes Secret {secret}.{item}, "
                "which the local runtime cannot read",
                f"set the value directly for local runs, {_USE_KUBERNETES}",
                path=f"spec.container.env.{key}",
                **where,
            )
        )
    return out


def check(resources: Sequence[ResourceView]) -> list[Diagnostic]:
    diagnostics: list[Diagnostic] = []
    for view in resources:
        spec = view.spec
        container = spec.get("container")
        if isinstance(container, Mapping):
            diagnostics += _container(view, container)
        url = spec.get("url")
        local_url = isinstance(url, str) and local_path(url) is not None
        if view.kind == "model" and container is None and url and not local_url:
            diagnostics.append(
                Diagnostic.error(
                    f"model url {url} is not a local path",
                    f"the local runtime reads model weights from file:// URLs, {_USE_KUBERNETES}",
                    address=view.address,
                    path="spec.url",
                )
            )
        diagnostics += _replicas(view) + _spot(view)
    return diagnostics


def _spot(view: ResourceView) -> list[Diagnostic]:
    """``resources.spot`` is accepted (the same configuration runs on Kubernetes) and noted."""
    declared = kinds.resources(view.kind, view.spec) or {}
    if not declared.get("spot"):
        return []
    return [
        Diagnostic.warning(
            "spot has no effect on the local runtime",
            "resources.spot asks for spot (preemptible) nodes on Kubernetes; here the job runs "
            "on this machine as usual.",
            address=view.address,
            path=f"{kinds.resources_path(view.kind, view.spec)}.spot",
        )
    ]


def _replicas(view: ResourceView) -> list[Diagnostic]:
    replicas = view.spec.get("replicas")
    if view.kind != "modelserver" or not isinstance(replicas, int) or replicas <= 1:
        return []
    return [
        Diagnostic.error(
            f"the local runtime cannot run {replicas} replicas of a model server",
            "it runs one process per server (replicas cannot share its port); set "
            f"`replicas: 1` (or 0 to stop it), {_USE_KUBERNETES} (--runtime kubernetes)",
            address=view.address,
            path="spec.replicas",
        )
    ]
