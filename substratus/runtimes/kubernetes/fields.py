"""Drift on the fields substratus manages, read from ``metadata.managedFields`` (DESIGN §8).

After a server-side apply the API server records, under our field manager, exactly the fields we
set (``fieldsV1``). ``owned(obj)`` walks that set over the live object and returns each owned leaf
as ``path → short hash of its value``; ``apply`` stores that map in the state and ``refresh``
compares it with the live object's. Fields the server or controllers default (``clusterIP``,
``terminationMessagePath``, status…) are not ours and never show up. An edit by hand of one of
our fields changes its value — or moves its ownership to another manager (``kubectl edit``,
``kubectl scale``), which removes it from our set: either way it is reported by path. Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from substratus.runtimes.kubernetes import names


def _leaf(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _walk(tree: Mapping[str, Any], value: Any, path: str, out: dict[str, str]) -> None:
    children = {k: v for k, v in tree.items() if k != "."}
    if not children:
        out[path or "."] = _leaf(value)
        return
    for key, sub in children.items():
        prefix, _, arg = key.partition(":")
        if prefix == "f":
            child = value.get(arg) if isinstance(value, Mapping) else None
            _walk(sub, child, f"{path}.{arg}" if path else arg, out)
        elif prefix == "k":
            want = json.loads(arg)
            found = None
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, Mapping) and all(item.get(k) == v for k, v in want.items()):
                        found = item
                        break
            label = ",".join(f"{k}={v}" for k, v in sorted(want.items()))
            _walk(sub, found, f"{path}[{label}]", out)
        elif prefix == "v":
            item = json.loads(arg)
            present = isinstance(value, list) and item in value
            out[f"{path}[{arg}]"] = _leaf(present)
        elif prefix == "i":
            idx = int(arg)
            child = value[idx] if isinstance(value, list) and idx < len(value) else None
            _walk(sub, child, f"{path}[{idx}]", out)


def owned(obj: Mapping[str, Any], manager: str = names.MANAGER) -> dict[str, str]:
    """``path → value hash`` of every field ``manager`` applied to ``obj``."""
    out: dict[str, str] = {}
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("operation") != "Apply":
            continue
        if entry.get("subresource"):
            continue
        _walk(entry.get("fieldsV1") or {}, obj, "", out)
    return out


def changed(recorded: Mapping[str, str], live: Mapping[str, str]) -> list[str]:
    """Paths whose value changed, or that we no longer own, since ``recorded`` was taken."""
    return sorted(p for p, h in recorded.items() if live.get(p) != h)
