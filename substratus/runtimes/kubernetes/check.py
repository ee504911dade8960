"""What the Kubernetes runtime cannot run: diagnostics for ``KubernetesRuntime.check``. Pure.

- the artifact store must be mountable by pods: ``gs://`` (GCS FUSE, GKE: ``cloud: gcp``),
  ``file://`` (a node's host path: kind / single-node) or ``pvc://claim``;
- builds (git or local containers) need a ``registry`` to push to;
- a Model ``url`` must be in a store pods can mount;
- a local build context is uploaded to the store: a ``pvc://`` store cannot receive it;
- ``${{ secrets.NAME.KEY }}`` must name a valid Secret (DNS subdomain) and key;
- a job with ``spec.retries`` but no ``container.command`` is a warning: its pods cannot be
  given ``SUBSTRATUS_ATTEMPT`` (``manifests.attempt_command`` wraps the command) — except on
  more than one node, where each attempt is a Job of its own that gives it as a value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from substratus.engine import kinds
from substratus.engine.diagnostic import Diagnostic
from substratus.engine.runtime import ResourceView
from substratus.engine.spec import secret_refs
from substratus.runtimes.kubernetes.volumes import Location

SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
FIX_STORE = (
    "Set `artifacts:` in the Project (or --artifacts) to gs://bucket/prefix on GKE, "
    "pvc://claim on any cluster, or file:///path for kind (a path on the node)."
)


def _store(url: str, cloud: str) -> list[Diagnostic]:
    try:
        loc = Location.parse(url)
    except ValueError:
        return [Diagnostic.error(f"the artifact store {url} cannot be mounted by pods", FIX_STORE)]
    if loc.scheme == "gs" and cloud != "gcp":
        return [
            Diagnostic.error(
                f"the artifact store {url} needs GKE's GCS FUSE driver (cloud: gcp)",
                f"Set `cloud: gcp` in the Project when the cluster is GKE. {FIX_STORE}",
            )
        ]
    return []


def check_resources(
    resources: Sequence[ResourceView], artifacts_url: str, cloud: str, registry: str
) -> list[Diagnostic]:
    needs_store = any(kinds.stores_artifacts(v.kind) for v in resources)
    out = _store(artifacts_url, cloud) if needs_store else []
    for view in resources:
        if view.kind == "build" and not registry:
            out.append(
                Diagnostic.error(
                    "building an image needs a registry to push it to",
                    "Set `registry:` in the Project (e.g. us-docker.pkg.dev/PROJECT/substratus "
                    "on GKE, localhost:5000 for kind), or use a container `image:`.",
                    address=view.address,
                )
            )
        if (
            view.kind == "build"
            and view.spec.get("source") == "local"
            and artifacts_url.startswith("pvc://")
        ):
            out.append(
                Diagnostic.error(
                    "a local build context cannot be uploaded to a pvc:// artifact store",
                    "Use a gs:// store, or a git source for this container.",
                    address=view.address,
                )
            )
        env = (view.spec.get("container") or {}).get("env") or {}
        for var, (secret, key) in sorted(
            secret_refs({str(k): str(v) for k, v in env.items()}).items()
        ):
            if not (SECRET_NAME.match(secret) and len(secret) <= 253 and SECRET_KEY.match(key)):
                out.append(
                    Diagnostic.error(
                        f"env {var} references the Secret {secret!r} key {key!r}, which "
                        "Kubernetes cannot name",
                        "A Secret name is lower-case letters, digits, '-' and '.'; a key is "
                        "letters, digits, '-', '_' and '.'.",
                        address=view.address,
                        path=f"spec.container.env.{var}",
                    )
                )
        url = view.spec.get("url")
        if view.kind == "model" and isinstance(url, str) and not view.spec.get("container"):
            try:
                Location.parse(url)
            except ValueError:
                out.append(
                    Diagnostic.error(
                        f"model url {url} cannot be mounted by pods",
                        "Use a gs://, file:// or pvc:// location.",
                        address=view.address,
                        path="spec.url",
                    )
                )
        out += _attempt_unknown(view)
    return out


def _attempt_unknown(view: ResourceView) -> list[Diagnostic]:
    """A job that retries without a ``command``: it retries, but its pods cannot be told their
    attempt (the command is what ``manifests.attempt_command`` wraps to count it)."""
    container = view.spec.get("container") or {}
    if not kinds.retries(view.kind, view.spec) or container.get("command"):
        return []
    if kinds.nodes(view.kind, view.spec) > 1:  # given as a value (``indexed.spread``)
        return []
    return [
        Diagnostic.warning(
            "SUBSTRATUS_ATTEMPT is not set in the pods of this job",
            "It retries (its artifacts/ kept), but substratus counts attempts by running "
            "container.command through /bin/sh, and this container runs its image's entrypoint. "
            "Set container.command (the entrypoint) to give the workload SUBSTRATUS_ATTEMPT, or "
            "let it find its checkpoints in artifacts/ by itself.",
            address=view.address,
            path="spec.retries",
        )
    ]
