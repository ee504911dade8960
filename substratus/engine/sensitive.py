"""Sensitive params (DESIGN §5): never printed, never stored, only their hash.

A document lists the params whose values are secret: ``sensitive: [spec.loader.params.token]``.
``mask`` replaces each such value in the canonical spec by a marker ``{"$sensitive":
"sha256:…"}``: digests, plans and the state only ever see the marker (so a changed secret still
changes the digest and shows as a change, as ``(sensitive)``). ``reveal`` puts the real values
back into the spec handed to a runtime at apply time; they come from the configuration loaded for
that apply, never from a plan file or the state.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from substratus.engine.kinds import PARAM_SECTIONS

MARK = "$sensitive"


def is_marker(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and MARK in value


def fingerprint(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(b"substratus-sensitive\0" + data.encode()).hexdigest()


def split_path(path: str) -> tuple[str, ...] | None:
    """``spec.loader.params.token`` -> ("loader", "params", "token") if it names a param."""
    parts = tuple(path.split("."))
    if len(parts) < 3 or parts[0] != "spec":
        return None
    inner = parts[1:]
    for parent in PARAM_SECTIONS:
        if inner[: len(parent)] == parent and len(inner) == len(parent) + 1:
            return inner
    return None


def mask(spec: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """Take the values at ``paths`` out of ``spec`` (in place); returns path -> real value.
    Paths must be valid (``split_path``) and set."""
    secrets: dict[str, Any] = {}
    for path in paths:
        parts = split_path(path)
        assert parts is not None
        node: Any = spec
        for part in parts[:-1]:
            node = node[part]
        secrets[path] = node[parts[-1]]
        node[parts[-1]] = {MARK: fingerprint(node[parts[-1]])}
    return secrets


def reveal(spec: Mapping[str, Any], secrets: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A copy of ``spec`` with the real values of its sensitive params."""
    if not secrets:
        return spec
    out = copy.deepcopy(dict(spec))
    for path, value in secrets.items():
        parts = split_path(path)
        if parts is None:
            continue
        node: Any = out
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and is_marker(node.get(parts[-1])):
            node[parts[-1]] = value
    return out
