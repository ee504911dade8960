"""A ``Plan`` as GitHub Markdown: the PR comment and job summary of ``substratus comment`` (§10).

``render_markdown(plan, sha256=..., title=..., budget=65536)`` returns, in order: a heading (the
caller's title: plain text in which `` `…` `` pairs are code spans), the summary line
``Plan: A to add, C to change, D to destroy.`` (and "No changes…" when there are none), for a
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
still listed; 7 the same with each group's addresses cut to fit ("… and N more"); 8 only as many
groups as fit. The heading, summary line, warning, the estimate's totals line and the footer are
never dropped; a budget below heading + summary + footer is exceeded. Whatever is left out says
so where it would have been, and a shortened text says so once at the top, with ``full_plan``
(where the whole plan is: the caller knows; by default ``substratus show <plan_file>``). "… and
N more" is said only after at least one listed item. Lists of addresses and long reasons are
wrapped (``WRAP``), so no line is much longer than one address or one field diff. Same plan,
same arguments → same text. User-controlled text is escaped (``engine.mdtext``); sensitive
values stay ``(sensitive)`` as everywhere. Pure; no I/O.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from substratus.engine.diagnostic import Diagnostic
from substratus.engine.estimate_text import markdown_section
from substratus.engine.mdtext import code_span, escape_html, escape_md, escape_md_code, fence, wrap
from substratus.engine.plan import (
    SHOWN_ACTIONS,
    Action,
    Mode,
    Plan,
    Reason,
    ReasonCode,
    ResourceChange,
)
from substratus.engine.render import Painter, render_change, summary_line
from substratus.engine.render_graph import changes_graph, mermaid

GITHUB_COMMENT_LIMIT = 65_536
STEP_SUMMARY_BYTES = 1024 * 1024
WRAP = 100  # address lists and reasons wrap at this many characters
INDENT = " " * 4  # a continuation line: never a new block (``mdtext.wrap``)
# Mermaid's defaults (maxTextSize 50,000; maxEdges 500, 280 in some 10.x releases): a larger
# graph shows GitHub's error box instead of a drawing, so it is replaced by a one-line note.
GRAPH_MAX_NODES, GRAPH_MAX_EDGES, GRAPH_MAX_CHARS = 300, 280, 50_000
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
_NO_BECAUSE = (ReasonCode.ADOPT, ReasonCode.EXTERNAL)
Unit = Literal["characters", "bytes"]


@dataclass(frozen=True)
class RunInfo:
    """Where a plan was made in CI: ``sha`` (``GITHUB_SHA``) and its ``commit_url``, the pull
    request's ``head_sha`` when it differs (``GITHUB_SHA`` is then the test merge), and the
    ``run_url`` of the workflow run. Empty fields are left out."""

    sha: str = ""
    commit_url: str = ""
    head_sha: str = ""
    run_url: str = ""
    run_id: str = ""

    def line(self, lead: str = "Planned at commit") -> str:
        """``lead`` `abc1234` … · [CI run 42](…), or "" when nothing is known; on short lines
        (one paragraph)."""
        parts = []
        if self.sha:
            short = code_span(self.sha[:12])
            parts.append(
                f"{lead} [{short}]({_url(self.commit_url)})"
                if self.commit_url
                else f"{lead} {short}"
            )
            if self.head_sha and self.head_sha != self.sha:
                head = code_span(self.head_sha[:12])
                parts.append(f"(the pull request's head {head} merged into its base)")
        if self.run_url:
            name = f"CI run {escape_md(self.run_id)}" if self.run_id else "CI run"
            parts.append(f"{'· ' if parts else ''}[{name}]({_url(self.run_url)})")
        return "\n".join(parts)


def _url(url: str) -> str:
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


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


@dataclass(frozen=True)
class _Group:
    """Deletes or replacements with the same cause, in plan order."""

    action: Action
    cause: str  # escaped Markdown: "because … changed", or a reason without "because"
    addresses: list[str]

    def lines(self, keep: int | None) -> list[str]:
        """The group as one wrapped paragraph of the warning; ``keep``: addresses listed."""
        n = len(self.addresses)
        verb = "destroyed" if self.action is Action.DELETE else "replaced"
        sep = " " if self.cause.startswith("because ") else ": "
        head = f"**{code_span(self.action.symbol)} {n:,} {verb}**{sep}{self.cause}:"
        shown = self.addresses if keep is None else self.addresses[:keep]
        items = [code_span(a) + "," for a in shown]
        if items and len(shown) == n:
            items[-1] = items[-1][:-1] + "."
        elif items:
            items.append(f"… and {n - len(shown):,} more.")
        else:
            items.append("(the addresses are left out to fit).")
        return wrap(head.split(" ") + items, WRAP, "> ", "> " + INDENT)


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
        return [_details(c) for c in self.listed]

    @cached_property
    def one_lines(self) -> list[str]:
        return ["\n".join(wrap(_one_line(c).split(" "), WRAP, "- ", INDENT)) for c in self.listed]

    @cached_property
    def graph(self) -> str:
        return _graph(self.a.plan, self.a.plan_file)

    @cached_property
    def groups(self) -> dict[bool, list[_Group]]:
        """The deletes and replacements grouped by cause: exact (False) and broad (True)."""
        out: dict[bool, list[_Group]] = {}
        for broad in (False, True):
            by_cause: dict[tuple[Action, str], list[str]] = {}
            for action in (Action.DELETE, Action.REPLACE):
                for c in self.destructive:
                    if c.action is action:
                        by_cause.setdefault((action, _cause(c, broad)), []).append(c.address)
            out[broad] = [_Group(act, cause, addrs) for (act, cause), addrs in by_cause.items()]
        return out

    @cached_property
    def estimates(self) -> dict[bool, str]:
        est = self.a.plan.estimate_json()
        return {full: markdown_section(est, full=full) for full in (True, False)}

    def render(self, level: int, keep: int) -> str:
        """The text at ``level``; ``keep`` is the prefix a cut list shows (``keep_range``)."""
        a, plan = self.a, self.a.plan
        parts = [f"## {escape_md_code(a.title) if a.title else 'substratus plan'}", _summary(plan)]
        parts.append(a.run.line() if a.run else "")
        if level:
            parts.append(f"_{_shortened(a)}\n{a.full_plan}_")
        if level < 5:
            parts += [_diagnostic(w) for w in plan.warnings]
        elif plan.warnings:
            n = len(plan.warnings)
            parts.append(f"{n:,} plan warning{'s' if n != 1 else ''} left out to fit.")
        if self.destructive:
            parts.append(self.warning(level, keep))
        if plan.drift:
            parts.append(_drift(plan, level))
        if self.listed:
            parts.append(f"### Resources ({len(self.listed):,})")
            parts.append(self.resources(level, keep if level in (1, 5) else 0))
        parts.append(self.graph if level <= 3 else _graph_left_out(plan, a.plan_file))
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
        text = _grouped(self.listed[:shown])
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
                lines += wrap(_one_line(c).split(" "), WRAP, "> - ", "> " + INDENT)
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


def _summary(plan: Plan) -> str:
    line = f"**{summary_line(plan)}**"
    if plan.mode is Mode.REFRESH_ONLY:
        n = len(plan.drift)
        return (
            f"{line}\n\nThis is a refresh-only plan: applying it records {n} "
            f"object{'s' if n != 1 else ''} changed outside of substratus in the state and "
            "changes no resources."
            if n
            else f"{line}\n\nNo changes. Your resources still match the configuration."
        )
    if not plan.changes():
        what = (
            "No objects need to be destroyed."
            if plan.mode is Mode.DESTROY
            else "Your resources match the configuration."
        )
        return f"{line}\n\nNo changes. {what}"
    return line


def _phrases(change: ResourceChange) -> list[tuple[Reason | None, str]]:
    """The reasons as the text renderer words them (changed fields first, in one phrase), each
    with its reason (None for the fields' phrase)."""
    fields = [r.path for r in change.reasons if r.path and r.code.is_field]
    out: list[tuple[Reason | None, str]] = (
        [(None, f"because {', '.join(fields)} changed")] if fields else []
    )
    for r in change.reasons:
        if r.code is ReasonCode.NEW or (r.path and r.code.is_field):
            continue
        out.append((r, r.message if r.code in _NO_BECAUSE else f"because {r.message}"))
    return out


def _why(change: ResourceChange) -> list[str]:
    return [phrase for _, phrase in _phrases(change)]


def _cause(change: ResourceChange, broad: bool = False) -> str:
    """What a group of deletes or replacements has in common, escaped: the reasons without the
    resource's own address ("not in the configuration", "because dataset.d changed (…)");
    ``broad``: an input's change without which input ("because a dataset it uses changed")."""
    phrases: list[str] = []
    for r, phrase in _phrases(change):
        code = r.code if r is not None else None
        if code is ReasonCode.NOT_IN_CONFIG:
            phrase = "not in the configuration"
        elif code is ReasonCode.DESTROY:
            phrase = "destroy requested"
        elif broad and r is not None and code is ReasonCode.DEPENDENCY_CHANGED:
            kind = (r.address or "").rsplit("/", 1)[-1].split(".", 1)[0] or "resource"
            phrase = f"because a {kind} it uses changed"
        if phrase not in phrases:
            phrases.append(phrase)
    return escape_md("; ".join(phrases) or "no reason recorded")


def _headline(change: ResourceChange) -> str:
    if change.action is Action.CREATE and change.before:
        return "will be created again"
    return change.action.look.headline


def _one_line(change: ResourceChange) -> str:
    why = "; ".join(_why(change))
    symbol = code_span(change.action.look.symbol)
    text = f"{symbol} {code_span(change.address)} {_headline(change)}"
    return f"{text} ({escape_md(why)})" if why else text


def _drift(plan: Plan, level: int) -> str:
    head = (
        f"<details><summary>Objects have changed outside of substratus "
        f"({len(plan.drift):,})</summary>\n\n"
    )
    if level >= 5:
        return head + "Their list is left out to fit.\n\n</details>"
    lines = []
    for d in plan.drift:
        verb = d.status.verb
        detail = f": {escape_md(d.message)}" if level < 3 else ""
        lines.append(f"- {code_span(d.address)} {escape_md(verb)}{detail}")
    after = (
        "This is a refresh-only plan: applying it records them in the state."
        if plan.mode is Mode.REFRESH_ONLY
        else "Unless you have made equivalent changes to your configuration, the plan repairs them."
    )
    return head + "\n".join(lines) + f"\n\n{after}\n\n</details>"


_MARKERS = {"+": "+", "-": "-", "~": "!"}


def diff_line(line: str) -> str:
    """One line of the text renderer's block with its action marker in column 0 (see the
    module docstring): ``      ~ epochs = 3 -> 5`` → ``!       epochs = 3 -> 5``."""
    rest = line.lstrip(" ")
    at = len(line) - len(rest)
    symbol = rest.split(" ", 1)[0]
    if symbol == "-/+":
        return "! " + line
    if symbol in _MARKERS and at >= 1:
        return _MARKERS[symbol] + line[1:at] + " " + rest[1:]
    return " " + line if line.startswith(("-", "+", "!", "<", ">", "@")) else line


def _details(change: ResourceChange) -> str:
    why = next(iter(_why(change)), "")
    summary = (
        f"<code>{escape_html(change.action.look.symbol)}</code> <b>{escape_html(change.address)}"
        f"</b> {_headline(change)}{' — ' + escape_html(why) if why else ''}"
    )
    lines = [diff_line(line) for line in render_change(change, Painter(False))]
    block = fence("\n".join(lines), "diff")
    return f"<details><summary>{summary}</summary>\n\n{block}\n\n</details>"


def _grouped(changes: list[ResourceChange]) -> str:
    blocks = []
    for action in SHOWN_ACTIONS:
        group = [c for c in changes if c.action is action]
        if group:
            head = f"**{code_span(action.look.symbol)} {action.look.legend_short}**"
            blocks.append(head + "\n" + "\n".join(f"- {code_span(c.address)}" for c in group))
    return "\n\n".join(blocks)


def _graph_command(plan_file: str | None) -> str:
    if plan_file is None:
        return (
            f"{code_span('substratus plan --out plan.json')} then "
            f"{code_span('substratus graph plan.json --format mermaid')} print it"
        )
    return f"{code_span(f'substratus graph {shlex.quote(plan_file)} --format mermaid')} prints it"


def _graph_left_out(plan: Plan, plan_file: str | None) -> str:
    if not plan.changes():
        return ""
    return f"The graph of the changes is left out to fit; {_graph_command(plan_file)}."


def _graph(plan: Plan, plan_file: str | None) -> str:
    if not plan.changes():
        return ""
    nodes, edges, actions = changes_graph(plan)
    text = mermaid(nodes, edges, actions)
    if len(nodes) > GRAPH_MAX_NODES or len(edges) > GRAPH_MAX_EDGES or len(text) > GRAPH_MAX_CHARS:
        return (
            f"The graph of the changes has {len(nodes):,} resources and {len(edges):,} edges, too "
            f"many for GitHub to draw; {_graph_command(plan_file)}."
        )
    used = [act for act in Action if act in actions.values()]
    legend = " · ".join(
        f"{act.look.colour}: {code_span(act.symbol) + ' ' if act.symbol else ''}"
        f"{act.look.legend_short}"
        for act in used
    )
    return (
        f"<details open><summary>Graph of the changes ({len(nodes):,} resources)</summary>\n\n"
        f"{fence(text.rstrip(), 'mermaid')}\n\n{legend}\n\n</details>"
    )


def _diagnostic(d: Diagnostic) -> str:
    where = d.location()
    text = f"> [!NOTE]\n> **Warning: {escape_md(d.summary)}**"
    if where:
        text += f" ({escape_md(where)})"
    return text + (f"\n> {escape_md(d.detail)}" if d.detail else "")


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
