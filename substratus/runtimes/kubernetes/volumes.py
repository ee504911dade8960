"""Artifact locations on a cluster and the volumes that mount them (DESIGN §4, §8).

The store URL decides the volume type:

- ``gs://bucket/prefix`` (GKE): a GCS FUSE CSI ephemeral volume (driver
  ``gcsfuse.csi.storage.gke.io``, ``mountOptions: implicit-dirs,uid=0,gid=3003``) with the pod
  annotations the GKE sidecar injector needs;
- ``file:///dir`` (kind, single-node clusters): a ``hostPath`` (``DirectoryOrCreate``) — the path
  is on the node (with kind, mount a host directory there with ``extraMounts``);
- ``pvc://claim[/prefix]`` (any cluster): a PersistentVolumeClaim (ReadWriteMany for parallel jobs).

Every mount selects its directory with ``subPath``. Versions are
``{prefix}/{namespace}/{kind}s/{name}/{version}`` as on every runtime, notebooks keep
``{prefix}/{namespace}/notebooks/{name}`` across runs, and uploaded build contexts are
``{prefix}/{namespace}/builds/{name}/{contentHash[:16]}/context.tar.gz`` (``engine.kinds``).
Pure; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from substratus.engine import kinds
from substratus.runtimes.local.files import short_digest

SCHEMES = ("gs", "file", "pvc")
CONTENT_MOUNTS = {
    "data": "/content/data",
    "model": "/content/model",
    "artifacts": "/content/artifacts",
}
GCSFUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
GCSFUSE_ANNOTATIONS = {
    "gke-gcsfuse/volumes": "true",
    "gke-gcsfuse/cpu-limit": "2",
    "gke-gcsfuse/memory-limit": "800Mi",
    "gke-gcsfuse/ephemeral-storage-limit": "100Gi",
}


@dataclass(frozen=True)
class Location:
    """A directory (or object) of an artifact store: ``{scheme}://{root}/{key}``."""

    scheme: str
    root: str  # bucket, host directory or claim name
    key: str  # below root, no leading or trailing "/"

    @classmethod
    def parse(cls, url: str) -> Location:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in SCHEMES:
            raise ValueError(f"{url!r} is not a gs://, file:// or pvc:// URL")
        if scheme == "file":
            return cls("file", "/" + rest.strip("/"), "")
        root, _, key = rest.partition("/")
        if not root:
            raise ValueError(f"{url!r} names no bucket or claim")
        return cls(scheme, root, key.strip("/"))

    def child(self, *parts: str) -> Location:
        return Location(self.scheme, self.root, "/".join(p for p in (self.key, *parts) if p))

    @property
    def url(self) -> str:
        root = self.root.rstrip("/") if self.scheme == "file" else self.root
        tail = f"/{self.key}" if self.key else ""
        return f"{self.scheme}://{root}{tail}"


@dataclass(frozen=True)
class Store:
    """The artifact store new versions are written to."""

    base: Location

    @classmethod
    def parse(cls, url: str) -> Store:
        return cls(Location.parse(url))

    @property
    def url(self) -> str:
        return self.base.url

    def resource(self, namespace: str, kind: str, name: str) -> Location:
        return self.base.child(kinds.artifact_prefix(namespace, kind, name))

    def version(self, namespace: str, kind: str, name: str, version: str) -> Location:
        return self.resource(namespace, kind, name).child(version)

    def notebook(self, namespace: str, name: str) -> Location:
        return self.base.child(kinds.artifact_prefix(namespace, kinds.Kind.NOTEBOOK, name))

    def upload(self, namespace: str, build: str, content_hash: str) -> Location:
        prefix = kinds.upload_prefix(namespace, build, short_digest(content_hash))
        return self.base.child(prefix, "context.tar.gz")


def mount(role: str, url: str, read_only: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, volumeMount) putting the store directory ``url`` at ``/content/{role}``."""
    loc = Location.parse(url)
    volume: dict[str, Any] = {"name": role}
    if loc.scheme == "gs":
        volume["csi"] = {
            "driver": GCSFUSE_DRIVER,
            "readOnly": read_only,
            "volumeAttributes": {
                "bucketName": loc.root,
                "mountOptions": "implicit-dirs,uid=0,gid=3003",
            },
        }
    elif loc.scheme == "file":
        volume["hostPath"] = {"path": loc.root, "type": "DirectoryOrCreate"}
    else:
        volume["persistentVolumeClaim"] = {"claimName": loc.root, "readOnly": read_only}
    volume_mount: dict[str, Any] = {
        "name": role,
        "mountPath": CONTENT_MOUNTS.get(role, f"/{role}"),
        "readOnly": read_only,
    }
    if loc.key:
        volume_mount["subPath"] = loc.key
    return volume, volume_mount


def pod_annotations(urls: list[str]) -> dict[str, str]:
    """Annotations a pod mounting these URLs needs (the GCS FUSE sidecar on GKE)."""
    return dict(GCSFUSE_ANNOTATIONS) if any(u.startswith("gs://") for u in urls) else {}
