"""Helpers for the gs:// artifact store tests: workloads, bucket inspection."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from substratus.runtimes.artifacts_gcs import MARKER, GsPath
from tests.support.gcs import GcsServer

PY = sys.executable

MANY = """
import json, os, pathlib
content = pathlib.Path(os.environ["CONTENT_DIR"])
params = json.loads((content / "params.json").read_text())
if params.get("counter"):
    with open(params["counter"], "a") as fh:
        fh.write("run\\n")
out = content / "artifacts"
for i in range(int(params.get("files", 3))):
    sub = out / f"part-{i % 3}"
    sub.mkdir(exist_ok=True)
    (sub / f"shard-{i}.bin").write_bytes(os.urandom(int(params.get("size", 1000))))
(out / "empty" / "dir").mkdir(parents=True)
(out / "weights.bin").write_text(params.get("tag", "w"))

def tree(root):
    if not root.exists():
        return None
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

def tag(root):
    path = root / "weights.bin"
    return path.read_text() if path.exists() else None

seen = {role: {"files": tree(content / role), "tag": tag(content / role),
               "target": os.path.realpath(content / role) if (content / role).exists() else None}
        for role in ("data", "model")}
(out / "inputs.json").write_text(json.dumps(seen))
"""


def many_spec(params: Mapping[str, Any], *, kind: str = "loader") -> dict[str, Any]:
    section = {"params": dict(params)}
    if kind == "trainer":
        section = {**section, "dataset": {"name": "d"}, "baseModel": {"name": "base"}}
    return {
        "container": {"local": {"path": "."}, "command": [PY, "many.py"], "env": {}},
        kind: section,
    }


def objects(server: GcsServer, url: str) -> dict[str, Any]:
    """The objects under a gs:// URL by their name relative to it (read around the proxy)."""
    where = GsPath.parse(url)
    blobs = server.direct_client().list_blobs(where.bucket, prefix=where.dir_prefix)
    return {b.name.removeprefix(where.dir_prefix): b for b in blobs}


def manifest(server: GcsServer, version_url: str) -> dict[str, Any]:
    where = GsPath.parse(version_url).child(MARKER)
    blob = server.direct_client().bucket(where.bucket).blob(where.key)
    data = json.loads(blob.download_as_bytes())
    assert isinstance(data, dict)
    return data


def delete_objects(server: GcsServer, url: str, only: str | None = None) -> None:
    """Delete the objects under a gs:// URL (or just the one named ``only``), around the proxy."""
    for name, blob in objects(server, url).items():
        if only is None or name == only:
            blob.delete()


def files_under(root: Path) -> dict[str, bytes]:
    """The files of a version directory (its local manifest file aside: the store's marker is
    its own object)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).as_posix() != ".substratus-complete"
    }


def list_calls(server: GcsServer, bucket: str) -> int:
    """How many object list requests reached the proxy for ``bucket``."""
    return sum(
        1 for e in server.proxy.log() if e.method == "GET" and e.path == f"/storage/v1/b/{bucket}/o"
    )


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0
