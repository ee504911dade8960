"""State backends: where the state and its lock live (DESIGN §7).

``open_backend(url, workspace, base_dir)`` is the one entry point the CLI uses:

- ``file://DIR`` or a plain path → ``local.FileBackend`` (relative paths are relative to
  ``base_dir``, the directory of the configuration; the CLI's default is ``.substratus/state``);
- ``gs://bucket/prefix`` → ``gcs.GcsBackend`` (Google Cloud Storage; imported only then, so
  local runs never load the Google SDK);
- anything else → ``DiagnosticError`` listing the supported schemes.

Workspace names must match ``[a-zA-Z0-9][-_.a-zA-Z0-9]*``. Backends import engine types only;
a cloud backend must import its SDK lazily so local runs never load it.
"""

from __future__ import annotations

from pathlib import Path

from substratus.engine.backend import Backend
from substratus.engine.diagnostic import fail
from substratus.state.local import FileBackend
from substratus.state.locking import lock_with_timeout
from substratus.state.workspace import DEFAULT_WORKSPACE, check_workspace

__all__ = [
    "DEFAULT_WORKSPACE",
    "FileBackend",
    "check_workspace",
    "lock_with_timeout",
    "open_backend",
]

SUPPORTED = (
    "Supported state backends: `file://DIR` or a directory path (local files), "
    "`gs://bucket/prefix` (Google Cloud Storage)."
)


def open_backend(url: str, workspace: str, base_dir: Path) -> Backend:
    """The backend for ``url`` and ``workspace``; raises ``DiagnosticError`` for bad input."""
    check_workspace(workspace)
    text = url.strip()
    if not text:
        raise fail("the state backend URL is empty", SUPPORTED)
    scheme, sep, _ = text.partition("://")
    if not sep:
        return FileBackend(text, workspace, base_dir)
    scheme = scheme.lower()
    if scheme == "file":
        return FileBackend("file://" + text[len("file://") :], workspace, base_dir)
    if scheme == "gs":
        from substratus.state.gcs import GcsBackend

        return GcsBackend(text, workspace)
    raise fail(f"unsupported state backend URL {text!r} (scheme {scheme!r})", SUPPORTED)
