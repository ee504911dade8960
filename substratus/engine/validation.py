"""Turn pydantic validation errors into diagnostics with file:line and field path."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from substratus.engine.diagnostic import Diagnostic
from substratus.engine.documents import PathMap, original_path
from substratus.engine.yamlsource import Document, Path, path_str


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


def model_at(cls: type[BaseModel], loc: Path) -> type[BaseModel] | None:
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
    prefix: Path,
    pmap: PathMap,
    address: str,
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for err in exc.errors():
        loc: Path = tuple(p for p in err["loc"] if isinstance(p, int | str))
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
