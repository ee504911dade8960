"""Version manifests of ``file://`` artifact stores: what a completed version held (DESIGN §8).

When a job exits 0 its supervisor writes ``.substratus-complete`` into the version directory —
the same name the ``gs://`` store gives its completion marker — *before* the directory is
renamed into place, so a completed version always has one::

    {"format": 2, "files": {"<relative path>": {"size": n, "mtime_ns": t, "sha256": "…"}},
     "links": {"<relative path>": "<target>"}, "dirs": ["<empty directory>", …], …labels}

``changes(version)`` compares a version with its manifest cheaply — paths, sizes and
modification times; a file's content is hashed only when its time differs — and returns what
changed outside substratus, or None when the version has no manifest (written before
manifests: nothing can be compared). No engine imports: the supervisor uses this module.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MARKER = ".substratus-complete"
FORMAT = 2


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _walk(root: Path) -> tuple[dict[str, os.stat_result], dict[str, str], list[str]]:
    """(regular files with their stat, symlinks with their target, empty directories), as
    ``os.walk`` sees them (symlinks not followed, unreadable directories left out), in one
    ``os.scandir`` per directory (a refresh walks every version it checks)."""
    files: dict[str, os.stat_result] = {}
    links: dict[str, str] = {}
    empty: list[str] = []
    todo = [(os.fspath(root), "")]
    while todo:
        where, rel_base = todo.pop()
        try:
            with os.scandir(where) as listing:
                entries = list(listing)
        except OSError:
            continue
        if not entries and rel_base:
            empty.append(rel_base)
        for entry in entries:
            rel = f"{rel_base}/{entry.name}" if rel_base else entry.name
            if entry.is_dir(follow_symlinks=False):
                todo.append((entry.path, rel))
            elif rel == MARKER:
                continue
            elif entry.is_symlink():
                links[rel] = os.readlink(entry.path)
            elif entry.is_file(follow_symlinks=False):
                files[rel] = entry.stat(follow_symlinks=False)
    return files, links, sorted(empty)


def write(version: Path, labels: Mapping[str, Any] | None = None) -> None:
    """Write the manifest of ``version`` (a directory a job has just completed)."""
    files, links, dirs = _walk(version)
    doc = {
        **dict(labels or {}),
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {
            rel: {
                "size": info.st_size,
                "mtime_ns": info.st_mtime_ns,
                "sha256": _sha256(version / rel),
            }
            for rel, info in sorted(files.items())
        },
        "links": dict(sorted(links.items())),
        "dirs": dirs,
    }
    tmp = version / f".{MARKER}.tmp"  # one line: the C encoder (an indent is pure Python)
    tmp.write_text(json.dumps(doc, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, version / MARKER)


def read(version: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((version / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("files"), dict) else None


def changes(version: Path) -> list[str] | None:
    """What differs between ``version`` and its manifest ("out.txt modified", "x added", …);
    None without a manifest."""
    doc = read(version)
    if doc is None:
        return None
    files, links, _dirs = _walk(version)
    recorded: dict[str, Any] = doc["files"]
    out = [f"{rel} deleted" for rel in sorted(set(recorded) - set(files))]
    out += [f"{rel} added" for rel in sorted(set(files) - set(recorded))]
    for rel in sorted(set(files) & set(recorded)):
        info, want = files[rel], recorded[rel]
        if info.st_size != want.get("size") or (
            info.st_mtime_ns != want.get("mtime_ns")
            and _sha256(version / rel) != want.get("sha256")
        ):
            out.append(f"{rel} modified")
    if links != (doc.get("links") or {}):
        out.append("symbolic links changed")
    return sorted(out)
