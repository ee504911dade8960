"""Plan files: ``plan --out`` writes the plan document (through a temporary file, replaced
atomically); ``apply``, ``show`` and ``graph`` read it back. A failure is a diagnostic naming the
file, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

from substratus.engine.diagnostic import fail
from substratus.engine.plan import Plan
from substratus.engine.plan_document import parse_plan, plan_text


def write_plan(path: Path, the_plan: Plan) -> None:
    """Write ``the_plan`` to ``path`` (whole or not at all)."""
    try:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(plan_text(the_plan), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise fail(
            "Cannot write the plan file",
            f"{path}: {exc.strerror}. Choose a writable path with --out.",
        ) from exc


def read_plan(path: Path) -> Plan:
    """The plan saved in ``path``."""
    try:
        return parse_plan(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail("Cannot read the plan file", f"{path}: {exc.strerror}.") from exc
    except ValueError as exc:
        raise fail("Invalid plan file", f"{path}: {exc}.") from exc
