"""A configured resource: its address, validated spec and where it was declared.

``Resource`` is what the configuration loader produces and the graph, lineage and planner
consume. ``dependencies`` are the references the spec makes, each with the *role* the runtime
uses for the referenced outputs (``build``, ``data``, ``model``) and the field path that made it
(for diagnostics). Builds (``kind == "build"``) are implicit resources created for git/local
container sources; identical sources share one build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from substratus.engine.address import Address
from substratus.engine.diagnostic import Location
from substratus.engine.spec import Lifecycle


@dataclass(frozen=True)
class Dependency:
    role: str  # "build" | "data" | "model"
    address: Address
    path: str  # field path that made the reference, e.g. "spec.trainer.dataset"


@dataclass
class Resource:
    address: Address
    kind: str
    namespace: str  # effective namespace
    name: str
    spec: dict[str, Any]  # canonical spec (defaults filled)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    secrets: dict[str, Any] = field(default_factory=dict)  # sensitive param path -> value
    dependencies: list[Dependency] = field(default_factory=list)
    source: Location | None = None
    # Where each field was written: the document's line map and, for translated documents,
    # normalized path prefix -> written path prefix. Looked up only when a diagnostic needs it.
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)
    path_map: dict[tuple[str | int, ...], tuple[str | int, ...]] = field(default_factory=dict)
    file: str = ""
    # Builds only: where the source is on this machine (``path`` of a local directory, ``url`` of
    # a repository given as a local path), absolute. The spec holds them relative to the
    # configuration's root, so that moving the configuration changes no spec and no digest.
    origin: dict[str, str] = field(default_factory=dict)

    def source_of(self, path: str) -> Location | None:
        """``file:line`` of a dotted field path (longest known prefix), for diagnostics."""
        if not self.file:
            return self.source
        parts: list[str | int] = []
        for piece in path.replace("[", ".[").split("."):
            if piece.startswith("[") and piece.endswith("]") and piece[1:-1].isdigit():
                parts.append(int(piece[1:-1]))
            elif piece:
                parts.append(piece)
        written = tuple(parts)
        for n in range(len(written), 0, -1):
            prefix = written[:n]
            if prefix in self.path_map:
                written = self.path_map[prefix] + written[n:]
                break
        for n in range(len(written), 0, -1):
            line = self.lines.get(written[:n])
            if line is not None:
                return Location(self.file, line)
        return self.source
