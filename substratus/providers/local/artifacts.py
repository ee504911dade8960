"""The artifact store: where dataset and model versions (and notebook work) live.

Layout (DESIGN §4): ``{root}/{namespace}/{kind}s/{name}/{digest[:16]}/`` is a completed version;
``{digest[:16]}.partial/`` beside it is a job's output while it runs, renamed to the version
directory only when the job exits 0 — so "the version directory exists" means "the job
completed". Notebooks keep one persistent ``{root}/{namespace}/notebooks/{name}/`` directory.

``ArtifactStore`` is the seam for other stores: only ``file://`` exists today
(``FileArtifactStore``); a ``gs://`` store would stage versions locally and publish them.
``open_store(url)`` picks one. This module creates nothing until asked to remove something.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Protocol

from substratus.providers.local.files import remove_tree, short_digest

PARTIAL_SUFFIX = ".partial"


class ArtifactStore(Protocol):
    url: str

    def resource_dir(self, namespace: str, kind: str, name: str) -> Path: ...

    def path_for(self, namespace: str, kind: str, name: str, digest: str) -> Path: ...

    def partial_path_for(self, namespace: str, kind: str, name: str, digest: str) -> Path: ...

    def notebook_dir(self, namespace: str, name: str) -> Path: ...

    def url_for(self, path: Path) -> str: ...

    def entries(self, namespace: str, kind: str, name: str) -> list[Path]: ...

    def remove(self, path: Path) -> None: ...


class FileArtifactStore:
    """Artifacts in a local directory (``file:///abs/dir``)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = self.root.as_uri()

    def resource_dir(self, namespace: str, kind: str, name: str) -> Path:
        return self.root / namespace / f"{kind}s" / name

    def path_for(self, namespace: str, kind: str, name: str, digest: str) -> Path:
        return self.resource_dir(namespace, kind, name) / short_digest(digest)

    def partial_path_for(self, namespace: str, kind: str, name: str, digest: str) -> Path:
        return self.resource_dir(namespace, kind, name) / (short_digest(digest) + PARTIAL_SUFFIX)

    def notebook_dir(self, namespace: str, name: str) -> Path:
        return self.resource_dir(namespace, "notebook", name)

    def url_for(self, path: Path) -> str:
        return path.resolve().as_uri()

    def entries(self, namespace: str, kind: str, name: str) -> list[Path]:
        """Version and partial directories of one resource."""
        base = self.resource_dir(namespace, kind, name)
        try:
            return sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return []

    def remove(self, path: Path) -> None:
        remove_tree(path)


def local_path(url: str, base: Path | None = None) -> Path | None:
    """The local path of a ``file://`` URL or a plain path (relative to ``base``), else None."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            return None
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "" and url:
        path = Path(url).expanduser()
        return path if path.is_absolute() or base is None else base / path
    return None


def open_store(url: str) -> ArtifactStore:
    """The store for ``url``; only ``file://`` (or a plain directory path) is supported."""
    path = local_path(url)
    if path is None or not path.is_absolute():
        raise ValueError(
            f"the local runtime keeps artifacts only in a file:// directory, not {url!r}; "
            "set artifacts to file:///absolute/dir"
        )
    return FileArtifactStore(path)
