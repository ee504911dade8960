"""Diagnostics: the one way the engine reports a problem a user can fix.

A ``Diagnostic`` says what is wrong (``summary``), the details and what to do (``detail``), and
where:
a configuration file and line, a field path inside the document, and/or a resource address.
Everything that validates input collects diagnostics in one pass and raises a single
``DiagnosticError`` carrying all of them, so a user sees every mistake in one run. The CLI prints
them without a traceback and exits 1. Nothing here performs I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Location:
    """A place in a configuration file (1-based line)."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    summary: str
    detail: str = ""
    address: str | None = None
    source: Location | None = None
    path: str | None = None  # field path inside the document, e.g. "spec.trainer.dataset"

    @classmethod
    def error(cls, summary: str, detail: str = "", **where: object) -> Diagnostic:
        return cls(Severity.ERROR, summary, detail, **where)  # type: ignore[arg-type]

    @classmethod
    def warning(cls, summary: str, detail: str = "", **where: object) -> Diagnostic:
        return cls(Severity.WARNING, summary, detail, **where)  # type: ignore[arg-type]

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def location(self) -> str:
        """``file:line``, then ``address``, then ``field path``, whichever are known."""
        parts = [str(self.source)] if self.source else []
        if self.address:
            parts.append(self.address)
        if self.path:
            parts.append(self.path)
        return ", ".join(parts)

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Diagnostic:
        file, line = d.get("file"), d.get("line")
        return cls(
            Severity(str(d.get("severity", "error"))),
            str(d.get("summary", "")),
            str(d.get("detail", "")),
            str(d["address"]) if d.get("address") else None,
            Location(str(file), int(line) if isinstance(line, int) else None) if file else None,
            str(d["path"]) if d.get("path") else None,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "severity": self.severity.value,
            "summary": self.summary,
            "detail": self.detail,
            "address": self.address,
            "file": self.source.file if self.source else None,
            "line": self.source.line if self.source else None,
            "path": self.path,
        }


@dataclass
class Diagnostics:
    """An ordered collection of diagnostics with helpers to check for errors."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, diag: Diagnostic) -> None:
        self.items.append(diag)

    def extend(self, diags: Iterable[Diagnostic]) -> None:
        self.items.extend(diags)

    def error(self, summary: str, detail: str = "", **where: object) -> None:
        self.add(Diagnostic.error(summary, detail, **where))

    def warning(self, summary: str, detail: str = "", **where: object) -> None:
        self.add(Diagnostic.warning(summary, detail, **where))

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise DiagnosticError(self.items)

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class DiagnosticError(Exception):
    """Raised with every diagnostic of a failed step; the CLI prints them and exits 1."""

    def __init__(self, diagnostics: Iterable[Diagnostic] | Diagnostic) -> None:
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("; ".join(d.summary for d in self.diagnostics))


def fail(summary: str, detail: str = "", **where: object) -> DiagnosticError:
    """Build a ``DiagnosticError`` with one error diagnostic (``raise fail(...)``)."""
    return DiagnosticError(Diagnostic.error(summary, detail, **where))
