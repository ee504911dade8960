"""A failed plan on the pull request (DESIGN §10): what ``plan --json`` said, as the sticky comment.

- ``read_outcome(text)``: the NDJSON stream ``plan --json`` printed → a ``PlanOutcome`` (its
  error diagnostics, whether the plan finished, the file it saved the plan to), or None when
  ``text`` is not such a stream (a plan file is one JSON document with ``format_version``). An
  empty text is a plan that failed before it printed anything (a bad flag, say).
- ``failed_markdown(...)``: the comment for a plan that failed: it says so first (a
  ``[!CAUTION]`` alert), names the commit and links the CI run (``RunInfo``), shows the errors as
  the CLI prints them (as many as fit the budget, then how many are left out) or, when the plan
  stopped without an error, says that the run's log tells why; when the comment showed a plan
  before, ``outdated_note`` says that plan is outdated (its summary line and commit, carried over
  by later failures). It shows no plan SHA-256, so ``apply --expect-sha256 pr`` applies nothing
  until a plan succeeds.

Pure; no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from substratus.engine.diagnostic import Diagnostic
from substratus.engine.markdown_parts import RunInfo
from substratus.engine.mdtext import code_span, escape_md, escape_md_code, fence
from substratus.engine.render_diagnostic import render_diagnostic

FAILED = "> **The plan failed.**"  # ``review`` recognises a failed plan's comment by it
_SUMMARY = re.compile(r"^\*\*((?:Plan|No changes)[^*\n]{0,300})\*\*$", re.M)
_COMMIT = re.compile(r"^Planned at commit \[?`([0-9a-f]{7,40})`", re.M)
_OUTDATED = re.compile(r"^The plan this comment showed before \(.{0,400}$", re.M)


@dataclass(frozen=True)
class PlanOutcome:
    """What a ``plan --json`` stream says: ``errors`` (error diagnostics), ``finished`` (its
    ``change_summary`` came), ``plan_file`` (``plan_saved``'s path, when it saved one)."""

    errors: tuple[Diagnostic, ...] = ()
    finished: bool = False
    plan_file: str | None = None

    @property
    def failed(self) -> bool:
        return bool(self.errors) or not self.finished


def read_outcome(text: str) -> PlanOutcome | None:
    """The outcome of the ``plan --json`` stream ``text``; None when it is not one."""
    events = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            return None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return None
        events.append(event)
    errors = tuple(
        Diagnostic.from_json(e)
        for e in events
        if e["type"] == "diagnostic" and e.get("severity") == "error"
    )
    saved = [str(e["path"]) for e in events if e["type"] == "plan_saved" and e.get("path")]
    finished = any(e["type"] == "change_summary" for e in events)
    return PlanOutcome(errors, finished, saved[-1] if saved else None)


def outdated_note(previous: str | None) -> str:
    """What the comment's previous body showed, now outdated ("" when it showed no plan)."""
    if not previous:
        return ""
    carried = _OUTDATED.search(previous)
    if carried:  # a failure after a failure: still the same outdated plan
        return carried.group(0)
    summary = _SUMMARY.search(previous)
    if summary is None:
        return ""
    commit = _COMMIT.search(previous)
    at = f", planned at commit {code_span(commit.group(1))}" if commit else ""
    return (
        f"The plan this comment showed before (**{summary.group(1)}**{at}) is outdated: it is "
        f"removed, and {code_span('substratus apply --expect-sha256 pr')} applies nothing until "
        "a plan succeeds."
    )


def failed_markdown(
    title: str,
    outcome: PlanOutcome,
    *,
    run: RunInfo | None,
    previous: str | None,
    about: str,
    budget: int,
) -> str:
    """The comment for a failed plan (see the module docstring), at most ``budget`` characters
    when its fixed parts fit. ``about``: the footer's line (version, workspace)."""
    head = [
        f"## {escape_md_code(title)}",
        f"> [!CAUTION]\n{FAILED} Nothing can be applied from this pull request until a plan "
        "succeeds.",
        run.line("Tried at commit") if run else "",
        outdated_note(previous),
    ]
    tail = [f"---\n{about}"]
    errors = list(outcome.errors)
    if not errors:
        where = "the log of the CI step"
        if run and run.run_url:
            name = f"CI run {escape_md(run.run_id)}" if run.run_id else "the CI run"
            where = f"the log of [{name}]({run.run_url})"
        why = (
            "The plan stopped before it finished and reported no error (it was interrupted, or "
            f"it failed before it could start): {where} says why."
        )
        return _join([*head, why, *tail])
    keep = len(errors)
    while keep > 1 and len(_join([*head, _errors(errors, keep), *tail])) > budget:
        keep = max(1, keep * 3 // 4 if keep > 8 else keep - 1)
    return _join([*head, _errors(errors, keep), *tail])


def _errors(errors: list[Diagnostic], keep: int) -> str:
    n = len(errors)
    count = f"**{n:,} error{'s' if n != 1 else ''}:**" if n > 1 else "**The error:**"
    text = fence("\n".join(render_diagnostic(d) for d in errors[:keep]).rstrip(), "text")
    rest = n - keep
    if rest:
        text += f"\n\n… and {rest:,} more error{'s' if rest != 1 else ''}; the run's log has all."
    return f"{count}\n\n{text}"


def _join(parts: list[str]) -> str:
    return "\n\n".join(p for p in parts if p) + "\n"
