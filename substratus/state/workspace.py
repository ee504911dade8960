"""Workspace names: one state (and one lock) per workspace inside a backend.

A name becomes part of a file or object name (``<workspace>.json``), so it is restricted to
``[a-zA-Z0-9][-_.a-zA-Z0-9]*``: no separators, no leading dot (hidden/temp files), never empty.
``default`` is the workspace used when none is given. No I/O here.
"""

from __future__ import annotations

import re

from substratus.engine.diagnostic import fail

DEFAULT_WORKSPACE = "default"
WORKSPACE_PATTERN = re.compile(r"[a-zA-Z0-9][-_.a-zA-Z0-9]*")


def is_workspace_name(name: str) -> bool:
    return WORKSPACE_PATTERN.fullmatch(name) is not None


def check_workspace(name: str) -> str:
    """Return ``name`` if it is a valid workspace name, else raise a ``DiagnosticError``."""
    if not is_workspace_name(name):
        raise fail(
            f"invalid workspace name {name!r}",
            "A workspace name starts with a letter or digit and contains only letters, digits, "
            "'-', '_' and '.', e.g. `default`, `staging`, `team-b`.",
        )
    return name
