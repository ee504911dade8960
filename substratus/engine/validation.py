"""Turn pydantic validation errors into diagnostics with file:line and field path, and check
what pydantic cannot: that a workload's params, environment and command fit where every runtime
puts them.

Every top-level param reaches a workload as a ``PARAM_<KEY>`` environment variable, and
``container.env`` and ``container.command`` reach it as environment and argv. Linux refuses a
single such string over 128 KiB and all of them together over a quarter of the stack limit
("Argument list too long"); Kubernetes stores them in the Pod and the params ConfigMap (1 MiB).
``size_diagnostics`` refuses at validate time, at the value's line, anything over
``MAX_VALUE_BYTES`` per value and ``MAX_TOTAL_BYTES`` per resource, so no plan promises a run
that cannot start.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from substratus.engine.diagnostic import Diagnostic
from substratus.engine.documents import PathMap, original_path
from substratus.engine.kinds import PARAM_SECTIONS, misplaced_nodes
from substratus.engine.yamlsource import Document, FieldPath, path_str


def _unwrap(annotation: Any) -> type[BaseModel] | None:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap(arg)
            if found:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


# Fields that belong to other kinds, and what to say when they are written where they do not.
ELSEWHERE = {
    "retries": "retries is for Datasets and Models (a failed loader or trainer run starts "
    "again); a ModelServer or a Notebook is restarted by its runtime when it fails.",
}


def model_at(cls: type[BaseModel], loc: FieldPath) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` (relative to ``cls``)."""
    current: type[BaseModel] | None = cls
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = _unwrap(info.annotation)
    return current


def pydantic_diagnostics(
    exc: ValidationError,
    cls: type[BaseModel],
    doc: Document,
    prefix: FieldPath,
    pmap: PathMap,
    address: str,
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for err in exc.errors():
        loc: FieldPath = tuple(p for p in err["loc"] if isinstance(p, int | str))
        full = (*prefix, *loc)
        written = original_path(full, pmap)
        where = {"source": doc.source(written), "address": address, "path": path_str(written)}
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = model_at(cls, loc[:-1])
            allowed = sorted(parent.model_fields) if parent else []
            key = str(loc[-1]) if loc else "?"
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            hint = f" {ELSEWHERE[key]}" if key in ELSEWHERE else hint
            detail = f"Allowed fields here: {', '.join(allowed)}.{hint}" if allowed else ""
            out.append(Diagnostic.error(f"Unknown field {key!r}", detail, **where))
        elif kind == "missing":
            key = str(loc[-1]) if loc else "?"
            out.append(
                Diagnostic.error(
                    f"Missing required field {key!r}", f"Add {path_str(written)}.", **where
                )
            )
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            got = err.get("input")
            shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
            if len(shown) > 60:
                shown = shown[:57] + "..."
            label = path_str(written) or "document"
            out.append(
                Diagnostic.error(f"Invalid value for {label}", f"{msg} (got {shown}).", **where)
            )
    return out


MAX_VALUE_BYTES = 64 * 1024  # one param value, environment value or command argument
MAX_TOTAL_BYTES = 256 * 1024  # all of them together, for one resource


def _text(value: Any) -> str:
    """A param's value as a workload gets it: a string as it is, anything else as JSON
    (``json.dumps``; plain scalars without it)."""
    kind = type(value)
    if kind is str:
        text: str = value
        return text
    if kind is int:
        return int.__repr__(value)
    if kind is bool or value is None:
        return "null" if value is None else "true" if value else "false"
    return json.dumps(value)


def _size(text: str) -> int:
    """UTF-8 bytes of ``text`` (its length when it is ASCII, which Python knows at once)."""
    return len(text) if text.isascii() else len(text.encode())


def _bound(spec: dict[str, Any]) -> int:
    """An upper bound of the bytes ``_strings`` counts (a character is at most 4 UTF-8 bytes),
    found without building its list: most specs are far below every limit."""
    chars = 0
    for parent in PARAM_SECTIONS:
        node: Any = spec
        for part in parent:
            node = node.get(part) if isinstance(node, dict) else None
        for key, value in (node or {}).items():
            chars += len(key) + len(_text(value))
    container = spec.get("container") or {}
    for key, value in (container.get("env") or {}).items():
        chars += len(key) + len(str(value))
    for arg in container.get("command") or []:
        chars += len(str(arg))
    return 4 * chars


def _strings(spec: dict[str, Any]) -> list[tuple[FieldPath, str, int]]:
    """(spec path, what it is, UTF-8 bytes) of every string a workload gets in env or argv."""
    out: list[tuple[FieldPath, str, int]] = []
    for parent in PARAM_SECTIONS:
        node: Any = spec
        for part in parent:
            node = node.get(part) if isinstance(node, dict) else None
        for key, value in (node or {}).items():
            size = _size(key) + _size(_text(value))
            out.append((("spec", *parent, key), f"the param {key!r}", size))
    container = spec.get("container") or {}
    for key, value in (container.get("env") or {}).items():
        size = _size(key) + _size(str(value))
        out.append((("spec", "container", "env", key), f"the variable {key}", size))
    for i, arg in enumerate(container.get("command") or []):
        out.append((("spec", "container", "command", i), "the argument", _size(str(arg))))
    return out


def size_diagnostics(
    doc: Document, pmap: PathMap, spec: dict[str, Any], address: str
) -> list[Diagnostic]:
    """Errors for params, environment values and command arguments too large to pass."""
    if _bound(spec) <= MAX_VALUE_BYTES:  # then no value, nor all of them, is over a limit
        return []
    out: list[Diagnostic] = []
    found = _strings(spec)
    for path, what, size in found:
        if size > MAX_VALUE_BYTES:
            written = original_path(path, pmap)
            out.append(
                Diagnostic.error(
                    "Value too large for the environment",
                    f"{what.capitalize()} is {size:,} bytes; a workload gets it in its "
                    f"environment or command line, which takes at most {MAX_VALUE_BYTES:,} "
                    "bytes per value. Put large data in a file or a dataset and pass its path.",
                    source=doc.source(written),
                    address=address,
                    path=path_str(written),
                )
            )
    total = sum(size for _, _, size in found)
    if not out and total > MAX_TOTAL_BYTES:
        path = max(found, key=lambda f: f[2])[0]
        written = original_path(path[:-1], pmap)
        out.append(
            Diagnostic.error(
                "Params and environment too large",
                f"The params, environment and command of {address} add up to {total:,} bytes; "
                f"a workload's environment and command line take at most {MAX_TOTAL_BYTES:,}. "
                "Put large data in a file or a dataset and pass its path.",
                source=doc.source(written),
                address=address,
                path=path_str(written),
            )
        )
    return out


def nodes_diagnostics(
    doc: Document, pmap: PathMap, kind: str, spec: dict[str, Any], address: str
) -> list[Diagnostic]:
    """An error for ``resources.nodes`` above 1 where the kind cannot span nodes
    (``kinds.misplaced_nodes``: a ModelServer or a Notebook)."""
    found = misplaced_nodes(kind, spec)
    if found is None:
        return []
    written = original_path(tuple(found.split(".")), pmap)
    what = "A ModelServer" if kind == "modelserver" else "A Notebook"
    how = (
        "scale it with spec.replicas instead"
        if kind == "modelserver"
        else "a notebook runs as one pod"
    )
    return [
        Diagnostic.error(
            "nodes is only for loaders and trainers",
            f"{what} runs each of its pods on one node ({how}); only a Dataset's or a Model's "
            f"loader or trainer spans nodes. Remove {path_str(written)}.",
            source=doc.source(written),
            address=address,
            path=path_str(written),
        )
    ]
