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
from substratus.engine.diagnostic import Source
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
    dependencies: list[Dependency] = field(default_factory=list)
    source: Source | None = None
    line_of: dict[str, int] = field(default_factory=dict)  # field path -> line (for diagnostics)
    file: str = ""

    def source_of(self, path: str) -> Source | None:
        """``file:line`` of a field path (longest known prefix), for diagnostics."""
        if not self.file:
            return self.source
        probe = path
        while probe:
            if probe in self.line_of:
                return Source(self.file, self.line_of[probe])
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        return self.source
