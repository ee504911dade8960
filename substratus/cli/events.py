"""``plan --json``: the plan as a stream of NDJSON events for CI systems (part of the CLI layer).

One JSON object per line, from the first line (no blank line, nothing else), each with a
``type`` and a ``timestamp`` (ISO 8601, UTC, added by ``emit``: every NDJSON stream of the CLI,
``apply --json``'s progress events included, is written through it), in this order:

- ``version``: ``substratus_version``, ``plan_format_version`` — written before planning starts;
- ``diagnostic``: each warning (``severity``, ``summary``, ``detail``, ``address``…);
- ``drift``: each change made outside substratus (``address``, ``status``, ``message``);
- ``planned_change``: each resource change, no-ops included (``change``: the same object as in
  the plan file's ``resource_changes``, so ``actions`` reads as in Terraform);
- ``change_summary``: ``add``, ``change``, ``destroy``, ``replace``, ``has_changes``, the
  plan's ``sha256`` (of the plan document, as ``--out`` writes it) and the estimate's totals;
- ``plan_saved``: ``path`` and ``sha256`` when ``--out`` was given.

When the plan fails, its errors follow ``version`` as ``diagnostic`` events (``severity``
``error``) and nothing else comes: ``substratus comment`` reads such a stream as a failed plan.

Sensitive values are already masked in the ``Plan`` (as in every other output).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from substratus import __version__
from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.plan import PLAN_FORMAT_VERSION, Plan


def version_event() -> dict[str, Any]:
    return {
        "type": "version",
        "substratus_version": __version__,
        "plan_format_version": PLAN_FORMAT_VERSION,
    }


def plan_events(plan: Plan, saved: Path | None = None) -> Iterator[dict[str, Any]]:
    # the plan document's models: only here (an apply's progress and errors do without them)
    from substratus.engine.plan_document import change_dict, plan_sha256

    sha = plan_sha256(plan)
    for w in plan.warnings:
        yield {"type": "diagnostic", **w.to_json()}
    for d in plan.drift:
        yield {"type": "drift", **asdict(d)}
    for c in plan.resource_changes:
        yield {"type": "planned_change", "change": change_dict(c)}
    yield {
        "type": "change_summary",
        **plan.summary(),
        "has_changes": plan.has_changes,
        "sha256": sha,
        "estimate": dict(plan.estimate_json().get("totals") or {}),
    }
    if saved is not None:
        yield {"type": "plan_saved", "path": str(saved), "sha256": sha}


def timestamp() -> str:
    """Now, as every event's ``timestamp``: ISO 8601 in UTC, ``2026-12-02T16:42:33.123456Z``."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def emit(event: dict[str, Any], out: IO[str] | None = None) -> None:
    """Write ``event`` as one NDJSON line: its ``type`` first, then its ``timestamp``."""
    line = {"type": event["type"], "timestamp": timestamp(), **event}
    print(json.dumps(line, sort_keys=False), file=out or sys.stdout, flush=True)


@contextmanager
def errors_as_events(enabled: bool) -> Iterator[None]:
    """With ``--json`` (``enabled``), a failure's errors are ``diagnostic`` events too, then
    raised as before (their text goes to stderr)."""
    try:
        yield
    except DiagnosticError as exc:
        for d in exc.diagnostics if enabled else []:
            emit({"type": "diagnostic", **d.to_json()})
        raise
