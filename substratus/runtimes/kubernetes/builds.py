"""Image builds in the cluster: one Kaniko Job per build resource and digest (DESIGN §8).

A git source is cloned at the commit the plan resolved; a local directory is uploaded first
(``upload``: a deterministic tarball through a signed URL, skipped when the same content is in
the store). The image is ``{registry}/{build name}:{commit | contentHash[:16]}``; outputs
``image``, ``job`` and, for a local source, ``context`` (the uploaded tarball).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from substratus.engine.builds import resolve_location
from substratus.engine.runtime import RunContext, RunRequest
from substratus.runtimes.kubernetes import jobs, manifests, names
from substratus.runtimes.kubernetes.cluster import Cluster
from substratus.runtimes.kubernetes.manifests import BuildSource, Workload
from substratus.runtimes.kubernetes.volumes import Store
from substratus.runtimes.kubernetes.waits import Timing
from substratus.runtimes.local.files import short_digest


def build(
    cluster: Cluster,
    store: Store,
    registry: str,
    cloud: str,
    workdir: Path,
    timing: Timing,
    request: RunRequest,
    ctx: RunContext,
) -> dict[str, Any]:
    spec, ns = request.spec, request.namespace
    out: dict[str, Any] = {}
    if spec.get("source") == "git":
        tag = str(spec["commit"])
        url = resolve_location(str(spec["url"]), request.config_dir)
        source = BuildSource(git_url=url, commit=tag, path=str(spec.get("path")))
    else:
        from substratus.runtimes.kubernetes.upload import upload_context

        content_hash = str(spec["contentHash"])
        tag = short_digest(content_hash)
        target = store.upload(ns, request.name, content_hash)
        uploaded = upload_context(
            Path(resolve_location(str(spec["path"]), request.config_dir)),
            content_hash,
            store.url,
            target.key.removeprefix(store.base.key).lstrip("/"),
            ctx.phase,
            workdir,
        )
        source = BuildSource(tarball=uploaded.url)
        out["context"] = uploaded.url
    image = f"{registry}/{request.name}:{tag}"
    w = Workload(
        request.address,
        "build",
        ns,
        request.name,
        request.digest,
        image,
        cloud,
        resources=None if cloud == "kind" else {"cpu": 2},
        owner=request.owner,
        version=request.run_version,
    )
    name = names.job_name("build", request.name, request.run_version)
    recorded = request.prior_outputs is not None or request.intent is not None
    job = manifests.kaniko_job(w, name, source)
    jobs.run(cluster, job, None, ctx, timing, request.owner, recorded)
    return {**out, "image": image, "job": name}
