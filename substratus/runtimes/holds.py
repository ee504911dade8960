"""Holds: which versions in a shared artifact store other states still use (DESIGN §8).

Several states (repositories, workspaces, state backends) may share one artifact store. Each
removes only the versions it created (its records say which), and not even those while another
state *holds* them: uses one as an external dependency (a Model trained on, or a server serving,
another state's version). Each state keeps its holds in one document of the store,
``{store}/.substratus/holds/{lineage}.json``::

    {"format": 1, "lineage": "…", "workspace": "…", "updated_at": "…",
     "versions": ["{namespace}/{kind}s/{name}/{version}", …]}  # engine.kinds.version_key

rewritten whenever the state's holds are set (an empty set removes the document). A store
implements the I/O; this module holds the format and the file:// implementation. No engine state
is touched.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from substratus.engine.kinds import version_key
from substratus.engine.runtime import Held, Owner

HOLDS_DIR = ".substratus/holds"


def held_key(h: Held) -> str:
    """The store-relative name of a held version (``engine.kinds.version_key``)."""
    return version_key(h.namespace, h.kind, h.name, h.version)


def encode(owner: Owner, held: Iterable[Held]) -> bytes:
    doc = {
        "format": 1,
        "lineage": owner.lineage,
        "workspace": owner.workspace,
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": sorted({held_key(h) for h in held}),
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def decode(data: bytes) -> set[str]:
    """The versions a holds document lists; an unreadable one holds nothing it can name."""
    try:
        doc: Any = json.loads(data)
    except ValueError:
        return set()
    versions = doc.get("versions") if isinstance(doc, dict) else None
    return {str(v) for v in versions} if isinstance(versions, list) else set()


def document_name(lineage: str) -> str:
    return f"{lineage}.json"


# -- file:// stores ------------------------------------------------------------------------------


def read_file_holds(root: Path, owner: Owner) -> set[str]:
    """Versions held by every state but ``owner`` in the file:// store at ``root``."""
    folder = root / HOLDS_DIR
    mine = document_name(owner.lineage) if owner.lineage else None
    out: set[str] = set()
    with contextlib.suppress(OSError):
        for doc in folder.iterdir():
            if doc.suffix == ".json" and doc.name != mine:
                with contextlib.suppress(OSError):
                    out |= decode(doc.read_bytes())
    return out


def write_file_holds(root: Path, owner: Owner, held: Iterable[Held]) -> None:
    """Set ``owner``'s holds in the file:// store at ``root`` (atomically)."""
    if not owner.lineage:
        return
    held = list(held)
    path = root / HOLDS_DIR / document_name(owner.lineage)
    if not held:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(encode(owner, held))
    tmp.replace(path)
