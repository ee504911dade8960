"""The artifact store as the Kubernetes runtime sees it: pods write versions through their mounts;
this module only marks them complete, finds, lists and removes them.

For ``gs://`` stores (``substratus.runtimes.artifacts_gcs``, imported lazily) a version a job
completed is sealed with the same ``.substratus-complete`` marker the local runtime writes, so
versions are interchangeable between runtimes and a missing one is seen at refresh (one list
call per store). ``file://`` stores are host paths on a node: they are managed here only when
the same path exists on this machine (kind with a host mount); ``pvc://`` stores are not
reachable from here at all: completion is the Job's success, and cleaning is left to the user.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from substratus.engine.runtime import Held, Owner
from substratus.runtimes.holds import read_file_holds, write_file_holds
from substratus.runtimes.kubernetes.volumes import Location
from substratus.runtimes.local.files import remove_tree


def _local(loc: Location) -> Path | None:
    path = Path(loc.root) / loc.key if loc.key else Path(loc.root)
    return path if loc.scheme == "file" and Path(loc.root).is_dir() else None


def seal(url: str) -> str | None:
    """Mark a version complete after its job succeeded; its content fingerprint (gs://), which
    refresh compares to notice changes made outside substratus."""
    if url.startswith("gs://"):
        from substratus.runtimes import artifacts_gcs

        return artifacts_gcs.seal(url)
    return None


def inspect(wanted: Mapping[str, str | None]) -> dict[str, list[str] | None] | None:
    """gs:// versions (with their recorded fingerprints) → None when not complete, else what
    changed in them; ``None`` overall when nothing here can be checked."""
    gs = {u: fp for u, fp in wanted.items() if u.startswith("gs://")}
    if not gs:
        return None
    from substratus.runtimes import artifacts_gcs

    return artifacts_gcs.inspect_versions(gs)


def newest(resource_url: str) -> str | None:
    """URL of the newest complete version below a resource's directory (gs:// only)."""
    if not resource_url.startswith("gs://"):
        return None
    from substratus.runtimes import artifacts_gcs

    return artifacts_gcs.newest_version(resource_url)


def versions(resource_url: str) -> list[str]:
    """URLs of every version directory of a resource."""
    loc = Location.parse(resource_url)
    if loc.scheme == "gs":
        from substratus.runtimes import artifacts_gcs

        return artifacts_gcs.version_urls(resource_url)
    local = _local(loc)
    if local is None or not local.is_dir():
        return []
    return [loc.child(p.name).url for p in sorted(local.iterdir()) if p.is_dir()]


def remove(url: str) -> bool:
    """Remove a version or a resource's directory; ``False`` when this store is out of reach."""
    loc = Location.parse(url)
    if loc.scheme == "gs":
        from substratus.runtimes import artifacts_gcs

        artifacts_gcs.remove_prefix(url)
        return True
    local = _local(loc)
    if local is None:
        return False
    remove_tree(local)
    return True


def others_holds(store_url: str, owner: Owner) -> set[str]:
    """Versions states other than ``owner`` hold in the store (``runtimes.holds``); nothing
    for a store out of reach from here (pvc://: nothing here removes its versions either)."""
    loc = Location.parse(store_url)
    if loc.scheme == "gs":
        from substratus.runtimes import artifacts_gcs

        return artifacts_gcs.read_holds(store_url, owner)
    local = _local(loc)
    return read_file_holds(local, owner) if local is not None else set()


def set_holds(store_url: str, owner: Owner, held: Iterable[Held]) -> None:
    """Record ``owner``'s holds in the store (where it is reachable from here)."""
    if not store_url:
        return
    loc = Location.parse(store_url)
    if loc.scheme == "gs":
        from substratus.runtimes import artifacts_gcs

        artifacts_gcs.write_holds(store_url, owner, held)
        return
    local = _local(loc)
    if local is not None:
        write_file_holds(local, owner, held)
