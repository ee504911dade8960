"""The lock file's record: reading it back, and what to tell a user who finds it held.

``read_lock(path)`` returns the ``LockInfo`` stored in a lock file, ``None`` when there is no file,
and, for a file that is empty or not a lock record (a crash while creating it, or another tool),
a holder ``unknown`` whose id is ``invalid-<first 12 hex of the sha256 of its bytes>``: stable
while the bytes stay the same, so ``force-unlock`` can name it, and different as soon as a live
writer finishes, so it never removes a lock that has since become valid.

``abandoned(holder)``: its holder ran on this host (``who`` ends with ``@<hostname>``) and that pid
is no longer alive, so the lock can be taken over (``local.FileBackend.lock`` does, under the
directory ``flock``). It never claims a holder on another host, or of an invalid file, is gone.
``held_note(holder)`` says when a lock looks abandoned and how to remove it. No writes here.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from substratus.engine.backend import LockInfo
from substratus.state.files import read_bytes, sha256_hex

INVALID_LOCK_PREFIX = "invalid-"


def encode_lock(info: LockInfo) -> bytes:
    return (json.dumps(info.to_json(), indent=2) + "\n").encode()


def read_lock(path: Path) -> LockInfo | None:
    data = read_bytes(path)
    if data is None:
        return None
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not doc["id"]:
            raise ValueError("not a lock record")
        return LockInfo.from_json(doc)
    except (ValueError, TypeError):
        return _unknown_holder(path, data)


def _unknown_holder(path: Path, data: bytes) -> LockInfo:
    created = "unknown"
    with contextlib.suppress(OSError):
        mtime = path.stat().st_mtime
        created = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return LockInfo(
        operation="unknown",
        id=INVALID_LOCK_PREFIX + sha256_hex(data)[:12],
        who="unknown",
        pid=0,
        created=created,
        version="unknown",
        path=str(path),
    )


def abandoned(holder: LockInfo) -> bool:
    """Whether ``holder``'s process ran on this host and is gone."""
    if holder.id.startswith(INVALID_LOCK_PREFIX) and holder.who == "unknown":
        return False
    pid = holder.pid
    return (
        holder.who.endswith(f"@{socket.gethostname()}")
        and isinstance(pid, int)
        and not pid_alive(pid)
    )


def held_note(holder: LockInfo) -> str:
    """Why the lock may be abandoned and how to remove it, or ``""``."""
    if holder.id.startswith(INVALID_LOCK_PREFIX) and holder.who == "unknown":
        return (
            f"The lock file {holder.path} is empty or not valid JSON (a run crashed while "
            "creating it, or another tool wrote it). If no substratus run is using this "
            f"workspace, remove it with `substratus force-unlock {holder.id}`."
        )
    host, pid = socket.gethostname(), holder.pid
    if abandoned(holder):
        return (
            f"The process holding the lock (pid {pid} on {host}) is no longer running: the "
            "lock was left behind by a run that crashed or was killed. Remove it with "
            f"`substratus force-unlock {holder.id}`."
        )
    return ""


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists on this host; unknown (``<= 0``) counts as alive."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by another user
        return True
    return True
