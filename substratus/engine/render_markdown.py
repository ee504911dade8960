"""A ``Plan`` as GitHub Markdown: the PR comment and job summary of ``substratus comment`` (§10).

``render_markdown(plan, sha256=..., title=..., budget=65536)`` returns, in order: a heading (the
caller's title: plain text in which `` `…` `` pairs are code spans), the summary line
``Plan: A to add, C to change, D to destroy.`` (``render.summary_line``: replacements counted
in both and said so; numbers with thousands separators, as everywhere in the comment) (and
"No changes…" when there are none), for a
plan made in CI (``run``) the commit it was planned at and a link to the run, a
``> [!WARNING]`` alert naming every delete and replace with its reasons, the drift in a
collapsed ``<details>``, one ``<details>`` per resource with its field diff in a ``diff`` block,
a Mermaid graph of the changes coloured by action, the estimate (``engine.estimate_text``) and a
footer: the substratus version, mode and workspace and, for a plan saved to ``plan_file``, its
SHA-256 (given by the caller: the hash of that file) and ``substratus apply <plan_file>
--expect-sha256 <sha256>`` (the file name shell-quoted). Without ``plan_file`` the plan was not
saved: the footer shows no hash and says how to save a plan to apply exactly.

Diff blocks are coloured as GitHub colours ``diff``: by the first character of each line. The
action marker is moved to column 0: ``+`` (green) for a creation, ``-`` (red) for a deletion,
``!`` (orange, Atlantis's convention) for an in-place change ``~`` and for the fields that force
a replacement; a replacement's header is ``! -/+ model "x" {`` (orange, like its node in the
graph), never a line starting with ``-``, which GitHub would paint as a deletion. Other lines
start with a space (not coloured).

The text fits in ``budget`` (characters, or UTF-8 bytes with ``unit="bytes"``: the job
summary's 1 MiB), at the first level of ``LEVELS`` that fits: 0 full; 1 field diffs for as many
resources as fit, one line (action and reasons) for each of the others; 2 one line per resource;
3 addresses only, grouped by action; 4 the same without the graph; 5 as many addresses as fit
(drift and plan warnings only counted); then the warning is shortened: 6 grouped by cause
("2,950 replaced because build.big2 changed (spec.contentHash): `a`, `b`, …"), every address
still listed; 7 the same with each group's addresses cut to fit ("… and N more", at least one
listed); 8 grouped by broader cause ("because a dataset it uses changed": many one-resource
groups become one), every address listed; 9 the same, cut; 10 only as many groups as fit, one
address each, saying how many are left out. The heading, summary line, warning, the estimate's
totals line and the footer are never dropped; a budget below heading + summary + footer is
exceeded. Whatever is left out says so where it would have been, and a shortened text says so
once at the top, with ``full_plan`` (where the whole plan is: the caller knows; by default
``substratus show <plan_file>``, never a job summary). "… and N more" is said only after at
least one listed item. Lists of addresses and long reasons are wrapped (``WRAP``), so no line is
much longer than one address or one field diff. Same plan, same arguments → same text. The
parts are ``engine.markdown_parts``'s; user-controlled text is escaped (``engine.mdtext``);
sensitive values stay ``(sensitive)`` as everywhere. Pure; no I/O.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from substratus.engine import markdown_parts as mp
from substratus.engine.estimate_text import markdown_section
from substratus.engine.markdown_parts import INDENT, WRAP, RunInfo
from substratus.engine.mdtext import code_span, escape_md_code, wrap
from substratus.engine.plan import Action, Plan, ResourceChange

GITHUB_COMMENT_LIMIT = 65_536
LEVELS = (
    "full",
    "field diffs for as many resources as fit, one line for each of the others",
    "one line per resource",
    "addresses only",
    "addresses only, no graph",
    "as many addresses as fit, drift and warnings as counts",
    "warning grouped by cause",
    "warning grouped by cause, each group's addresses cut to fit",
    "warning grouped by broader cause (an input changed, whichever it was)",
    "warning grouped by broader cause, each group's addresses cut to fit",
    "warning cut to as many broad groups as fit, one address each",
)
Unit = Literal["characters", "bytes"]


@dataclass(frozen=True)
class MarkdownPlan:
    text: str
    level: int  # index into LEVELS


@dataclass(frozen=True)
class _Args:
    plan: Plan
    sha256: str
    title: str
    budget: int
    unit: Unit
    plan_file: str | None  # None: the plan was not saved
    full_plan: str  # a Markdown sentence saying where the whole plan is
    run: RunInfo | None


def default_full_plan(plan_file: str | None) -> str:
    """Where the whole plan is when the caller knows no better place: the CLI that prints it."""
    if plan_file is None:
        return f"{code_span('substratus plan')} prints the full plan."
    return f"{code_span('substratus show ' + shlex.quote(plan_file))} prints the full plan."


def render_markdown(
    plan: Plan,
    *,
    sha256: str,
    title: str = "",
    budget: int = GITHUB_COMMENT_LIMIT,
    unit: Unit = "characters",
    plan_file: str | None = None,
    full_plan: str | None = None,
    run: RunInfo | None = None,
) -> str:
    """The plan as Markdown of at most ``budget`` ``unit`` (see the module docstring)."""
    return render_markdown_with_level(
        plan,
        sha256=sha256,
        title=title,
        budget=budget,
        unit=unit,
        plan_file=plan_file,
        full_plan=full_plan,
        run=run,
    ).text


def render_markdown_with_level(
    plan: Plan,
    *,
    sha256: str,
    title: str = "",
    budget: int = GITHUB_COMMENT_LIMIT,
    unit: Unit = "characters",
    plan_file: str | None = None,
    full_plan: str | None = None,
    run: RunInfo | None = None,
) -> MarkdownPlan:
    """Like ``render_markdown``, also saying which level of ``LEVELS`` was used."""
    where = full_plan if full_plan is not None else default_full_plan(plan_file)
    p = _Parts(_Args(plan, sha256, title, budget, unit, plan_file, where, run))
    size: Callable[[str], int] = len if unit == "characters" else lambda t: len(t.encode())
    for level in range(len(LEVELS)):
        lo, hi = p.keep_range(level)
        if lo > hi or size(p.render(level, lo)) > budget:
            continue
        while lo < hi:  # the longest prefix that fits
            mid = (lo + hi + 1) // 2
            if size(p.render(level, mid)) <= budget:
                lo = mid
            else:
                hi = mid - 1
        return MarkdownPlan(p.render(level, lo), level)
    last = len(LEVELS) - 1
    return MarkdownPlan(p.render(last, 0), last)


def _destructive(plan: Plan) -> list[ResourceChange]:
    return [c for c in plan.resource_changes if c.action in (Action.DELETE, Action.REPLACE)]


class _Parts:
    """The pieces of the text, each made once (a search for the level renders many times)."""

    def __init__(self, a: _Args) -> None:
        self.a = a
        self.listed = [c for c in a.plan.resource_changes if c.action is not Action.NOOP]
        self.destructive = _destructive(a.plan)

    def keep_range(self, level: int) -> tuple[int, int]:
        """The prefix lengths ``level`` may keep (``(0, 0)``: a level that keeps no prefix)."""
        if level == 1:
            return 1, len(self.listed) - 1
        if level == 5:
            return 0, len(self.listed)
        if level in (7, 9):  # each group keeps at least one address
            return 1, max((len(g.addresses) for g in self.groups[level == 9]), default=0) - 1
        if level == 10:
            return 0, len(self.groups[True]) - 1
        return 0, 0

    @cached_property
    def details(self) -> list[str]:
        return [mp.details(c) for c in self.listed]

    @cached_property
    def one_lines(self) -> list[str]:
        return ["\n".join(wrap(mp.one_line(c).split(" "), WRAP, "- ", INDENT)) for c in self.listed]

    @cached_property
    def graph(self) -> str:
        return mp.graph(self.a.plan, self.a.plan_file)

    @cached_property
    def groups(self) -> dict[bool, list[mp.CauseGroup]]:
        """The deletes and replacements grouped by cause: exact (False) and broad (True)."""
        out: dict[bool, list[mp.CauseGroup]] = {}
        for broad in (False, True):
            by_cause: dict[tuple[Action, str], list[str]] = {}
            for action in (Action.DELETE, Action.REPLACE):
                for c in self.destructive:
                    if c.action is action:
                        by_cause.setdefault((action, mp.cause(c, broad)), []).append(c.address)
            out[broad] = [
                mp.CauseGroup(act, cause, addrs) for (act, cause), addrs in by_cause.items()
            ]
        return out

    @cached_property
    def estimates(self) -> dict[bool, str]:
        est = self.a.plan.estimate_json()
        return {full: markdown_section(est, full=full) for full in (True, False)}

    def render(self, level: int, keep: int) -> str:
        """The text at ``level``; ``keep`` is the prefix a cut list shows (``keep_range``)."""
        a, plan = self.a, self.a.plan
        parts = [
            f"## {escape_md_code(a.title) if a.title else 'substratus plan'}",
            mp.summary(plan),
        ]
        parts.append(a.run.line() if a.run else "")
        if level:
            parts.append(f"_{_shortened(a)}\n{a.full_plan}_")
        if level < 5:
            parts += [mp.diagnostic(w) for w in plan.warnings]
        elif plan.warnings:
            n = len(plan.warnings)
            parts.append(f"{n:,} plan warning{'s' if n != 1 else ''} left out to fit.")
        if self.destructive:
            parts.append(self.warning(level, keep))
        if plan.drift:
            parts.append(mp.drift(plan, listed=level < 5, messages=level < 3))
        if self.listed:
            parts.append(f"### Resources ({len(self.listed):,})")
            parts.append(self.resources(level, keep if level in (1, 5) else 0))
        parts.append(self.graph if level <= 3 else mp.graph_left_out(plan, a.plan_file))
        parts.append(self.estimates[level <= 2])
        parts.append(_footer(a))
        return "\n\n".join(p for p in parts if p) + "\n"

    def resources(self, level: int, keep: int) -> str:
        if level == 0:
            return "\n\n".join(self.details)
        if level == 1:
            rest = len(self.listed) - keep
            others = f"The other {rest:,} resources, one line each, to fit:"
            return "\n\n".join([*self.details[:keep], others, "\n".join(self.one_lines[keep:])])
        if level == 2:
            return "\n".join(self.one_lines)
        shown = len(self.listed) if level < 5 else keep
        if not shown:
            return f"The list of the {len(self.listed):,} resources is left out to fit."
        text = mp.grouped(self.listed[:shown])
        rest = len(self.listed) - shown
        return text + (
            f"\n\n… and {rest:,} more resource{'s' if rest != 1 else ''}." if rest else ""
        )

    def warning(self, level: int, keep: int) -> str:
        """Every delete and replace: with reasons (levels 0-5), grouped by cause (6-8)."""
        deletes = sum(c.action is Action.DELETE for c in self.destructive)
        replaces = len(self.destructive) - deletes
        counts = [f"{deletes:,} to destroy"] if deletes else []
        counts += [f"{replaces:,} to replace"] if replaces else []
        lines = [
            "> [!WARNING]",
            f"> **Destructive changes: {', '.join(counts)}.** Review each of them before you "
            "apply.",
        ]
        if level < 6:
            lines.append(">")
            for c in self.destructive:
                lines += wrap(mp.one_line(c).split(" "), WRAP, "> - ", "> " + INDENT)
            return "\n".join(lines)
        every = self.groups[level >= 8]
        groups = every if level < 10 else every[:keep]
        cut = keep if level in (7, 9) else 1 if level == 10 else None
        for g in groups:
            lines += [">", *g.lines(cut)]
        if len(groups) < len(every):
            rest = sum(len(g.addresses) for g in every[len(groups) :])
            more = "… and " if groups else ""
            lines += [
                ">",
                f"> **This list is incomplete:** {more}{rest:,} more resources in "
                f"{len(every) - len(groups):,} groups. {self.a.full_plan}",
            ]
        return "\n".join(lines)


def _shortened(a: _Args) -> str:
    if a.unit == "bytes":
        return "This summary is shortened to fit GitHub's 1 MiB limit for a job summary."
    if a.budget <= GITHUB_COMMENT_LIMIT:
        return (
            f"This comment is shortened to fit GitHub's {GITHUB_COMMENT_LIMIT:,}-character limit."
        )
    return f"This text is shortened to fit the {a.budget:,}-character limit."


def _footer(a: _Args) -> str:
    plan = a.plan
    about = (
        f"substratus {code_span(plan.substratus_version or 'unknown')} · mode "
        f"{code_span(plan.mode.value)} · workspace {code_span(plan.workspace)}"
    )
    if a.plan_file is None:
        return (
            f"---\n{about}\n\nThis plan was not saved, so it cannot be applied exactly as "
            f"shown. To review and apply exactly one plan, save it: "
            f"{code_span('substratus plan --out plan.json')}, then "
            f"{code_span('substratus apply plan.json --expect-sha256 <its SHA-256>')}."
        )
    apply = f"substratus apply {shlex.quote(a.plan_file)} --expect-sha256 {a.sha256}"
    return (
        f"---\nPlan SHA-256: {code_span(a.sha256)} · {about}\n\nTo apply exactly this plan: "
        f"{code_span(apply)}"
    )
