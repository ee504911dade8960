"""A ``Plan`` as GitHub Markdown: the PR comment and job summary of ``substratus comment`` (§10).

``render_markdown(plan, sha256=..., title=..., budget=65536)`` returns, in order: a heading (the
caller's title: plain text in which `` `…` `` pairs are code spans), the summary line
``Plan: A to add, C to change, D to destroy.`` (and "No changes…" when there are none), a
``> [!WARNING]`` alert listing every delete and replace with its reasons, the drift in a
collapsed ``<details>``, one ``<details>`` per resource with its field diff in a ``diff`` block
(the text renderer's block, symbols moved to column 0 so GitHub colours them), a Mermaid graph
of the changes coloured by action (a one-line note instead when too large for GitHub to draw),
the estimate (``engine.estimate_text``: its totals line, and its per-resource table and
assumptions collapsed at levels 0 and 1), and a footer: the substratus version, mode and
workspace and, for a plan saved to ``plan_file``, its SHA-256 (given by the caller: the hash of
that file) and ``substratus apply <plan_file> --expect-sha256 <sha256>``. Without ``plan_file``
the plan was not saved: the footer shows no hash (it would be the hash of no file) and says how
to save a plan to apply exactly (``substratus plan --out plan.json``), never naming a file that
was not written.

The text fits in ``budget`` characters, at the first level of ``LEVELS`` that fits: 0 full; 1 one
line per resource (action and reasons); 2 addresses only, grouped by action; 3 the same without the
graph; 4 as many addresses as fit, then "… and N more resources" (drift and plan warnings only
counted). The heading, summary line, warning section, the estimate's totals line and footer are
never dropped: only when they alone do not fit is the warning list shortened, to addresses (5),
then to as many as fit, saying it is incomplete (6); a budget below heading + summary + footer is
exceeded. A shortened text says so in one line, pointing at ``full_plan_at``. Same plan, same
arguments → same text. User-controlled text is escaped (``engine.mdtext``); sensitive values stay
``(sensitive)`` as everywhere. Pure; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from substratus.engine.diagnostic import Diagnostic
from substratus.engine.estimate_text import markdown_section
from substratus.engine.mdtext import code_span, escape_html, escape_md, escape_md_code, fence
from substratus.engine.plan import SHOWN_ACTIONS, Action, Mode, Plan, ReasonCode, ResourceChange
from substratus.engine.render import Painter, render_change, summary_line
from substratus.engine.render_graph import changes_graph, mermaid

GITHUB_COMMENT_LIMIT = 65_536
# Mermaid's defaults (maxTextSize 50,000; maxEdges 500, 280 in some 10.x releases): a larger
# graph shows GitHub's error box instead of a drawing, so it is replaced by a one-line note.
GRAPH_MAX_NODES, GRAPH_MAX_EDGES, GRAPH_MAX_CHARS = 300, 280, 50_000
LEVELS = (
    "full",
    "one line per resource",
    "addresses only",
    "addresses only, no graph",
    "as many addresses as fit, drift and warnings as counts",
    "warning list as addresses only",
    "warning list cut to fit",
)
_NO_BECAUSE = (ReasonCode.ADOPT, ReasonCode.EXTERNAL)


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
    plan_file: str | None  # None: the plan was not saved
    full_plan_at: str


def render_markdown(
    plan: Plan,
    *,
    sha256: str,
    title: str = "",
    budget: int = GITHUB_COMMENT_LIMIT,
    plan_file: str | None = None,
    full_plan_at: str = "the job summary",
) -> str:
    """The plan as Markdown of at most ``budget`` characters (see the module docstring)."""
    return render_markdown_with_level(
        plan,
        sha256=sha256,
        title=title,
        budget=budget,
        plan_file=plan_file,
        full_plan_at=full_plan_at,
    ).text


def render_markdown_with_level(
    plan: Plan,
    *,
    sha256: str,
    title: str = "",
    budget: int = GITHUB_COMMENT_LIMIT,
    plan_file: str | None = None,
    full_plan_at: str = "the job summary",
) -> MarkdownPlan:
    """Like ``render_markdown``, also saying which level of ``LEVELS`` was used."""
    a = _Args(plan, sha256, title, budget, plan_file, full_plan_at)
    for level in range(4):
        text = _render(a, level, 0)
        if len(text) <= budget:
            return MarkdownPlan(text, level)
    level = next((lv for lv in (4, 5) if len(_render(a, lv, 0)) <= budget), 6)
    if level == 5:
        return MarkdownPlan(_render(a, 5, 0), 5)
    # Levels 4 and 6: the longest prefix of the list (resources; at 6 the warning's) that fits.
    # At 6 even an empty prefix may not fit when the budget is below heading + summary + footer.
    lo, hi = 0, len(_listed(plan) if level == 4 else _destructive(plan))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(_render(a, level, mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return MarkdownPlan(_render(a, level, lo), level)


def _listed(plan: Plan) -> list[ResourceChange]:
    return [c for c in plan.resource_changes if c.action is not Action.NOOP]


def _destructive(plan: Plan) -> list[ResourceChange]:
    return [c for c in plan.resource_changes if c.action in (Action.DELETE, Action.REPLACE)]


def _more(n: int, what: str, where: str) -> str:
    return f"… and {n:,} more {what}{'s' if n != 1 else ''} (the full plan is in {where})"


def _render(a: _Args, level: int, keep: int) -> str:
    """The text at ``level``; ``keep`` is how many addresses the cut list shows (levels 4, 6)."""
    plan, where = a.plan, escape_md(a.full_plan_at)
    parts = [f"## {escape_md_code(a.title) if a.title else 'substratus plan'}", _summary(plan)]
    if level:
        limit = (
            f"GitHub's {GITHUB_COMMENT_LIMIT:,}-character limit"
            if a.budget <= GITHUB_COMMENT_LIMIT
            else f"the {a.budget:,}-character limit"
        )
        parts.append(f"_This comment is shortened to fit {limit}; the full plan is in {where}._")
    if level < 4:
        parts += [_diagnostic(w) for w in plan.warnings]
    elif plan.warnings:
        n = len(plan.warnings)
        parts.append(f"{n:,} warning{'s' if n != 1 else ''}: see {where}.")
    if _destructive(plan):
        parts.append(_warning(plan, min(level - 4, 2) if level > 4 else 0, keep, where))
    if plan.drift:
        parts.append(_drift(plan, level))
    listed = _listed(plan)
    if listed:
        parts.append(f"### Resources ({len(listed):,})")
        if level == 0:
            parts += [_details(c) for c in listed]
        elif level == 1:
            parts.append("\n".join(f"- {_one_line(c)}" for c in listed))
        else:
            shown = len(listed) if level < 4 else keep if level == 4 else 0
            parts.append(_grouped(listed[:shown]))
            if shown < len(listed):
                parts.append(_more(len(listed) - shown, "resource", where))
    if level <= 2:
        parts.append(_graph(plan))
    parts.append(markdown_section(plan.estimate_json(), full=level <= 1))
    parts.append(_footer(a))
    return "\n\n".join(p for p in parts if p) + "\n"


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


def _why(change: ResourceChange) -> list[str]:
    """The reasons as the text renderer words them: changed fields first, in one phrase."""
    fields = [r.path for r in change.reasons if r.path and r.code.is_field]
    out = [f"because {', '.join(fields)} changed"] if fields else []
    for r in change.reasons:
        if r.code is ReasonCode.NEW or (r.path and r.code.is_field):
            continue
        out.append(r.message if r.code in _NO_BECAUSE else f"because {r.message}")
    return out


def _headline(change: ResourceChange) -> str:
    if change.action is Action.CREATE and change.before:
        return "will be created again"
    return change.action.look.headline


def _one_line(change: ResourceChange) -> str:
    why = "; ".join(_why(change))
    symbol = code_span(change.action.look.symbol)
    text = f"{symbol} {code_span(change.address)} {_headline(change)}"
    return f"{text} ({escape_md(why)})" if why else text


def _warning(plan: Plan, warn: int, keep: int, where: str) -> str:
    """Every delete and replace: with reasons (``warn`` 0), addresses only (1), cut (2)."""
    changes = _destructive(plan)
    deletes = sum(c.action is Action.DELETE for c in changes)
    replaces = len(changes) - deletes
    counts = [f"{deletes:,} to destroy"] if deletes else []
    counts += [f"{replaces:,} to replace"] if replaces else []
    lines = [
        "> [!WARNING]",
        f"> **Destructive changes: {', '.join(counts)}.** Review each of them before you apply.",
        ">",
    ]
    if warn == 0:
        lines += [f"> - {_one_line(c)}" for c in changes]
    else:
        shown = changes[:keep] if warn == 2 else changes
        for action in (Action.DELETE, Action.REPLACE):
            names = [code_span(c.address) for c in shown if c.action is action]
            if names:
                lines.append(
                    f"> **{code_span(action.look.symbol)} {action.look.legend_short}:** "
                    + ", ".join(names)
                )
        if len(shown) < len(changes):
            lines.append(
                f"> **This list is incomplete:** {_more(len(changes) - keep, 'resource', where)}."
            )
    return "\n".join(lines)


def _drift(plan: Plan, level: int) -> str:
    head = (
        f"<details><summary>Objects have changed outside of substratus "
        f"({len(plan.drift):,})</summary>\n\n"
    )
    if level >= 4:
        return head + "They are listed in the full plan.\n\n</details>"
    lines = []
    for d in plan.drift:
        verb = d.status.verb
        detail = f": {escape_md(d.message)}" if level < 2 else ""
        lines.append(f"- {code_span(d.address)} {escape_md(verb)}{detail}")
    after = (
        "This is a refresh-only plan: applying it records them in the state."
        if plan.mode is Mode.REFRESH_ONLY
        else "Unless you have made equivalent changes to your configuration, the plan repairs them."
    )
    return head + "\n".join(lines) + f"\n\n{after}\n\n</details>"


def _diff_lines(change: ResourceChange) -> str:
    """The text renderer's block, each ``+ - ~ -/+`` moved to column 0 (GitHub colours them)."""
    out = []
    for line in render_change(change, Painter(False)):
        at = len(line) - len(line.lstrip(" "))
        symbol = line[at:].split(" ", 1)[0]
        if symbol in ("+", "-", "~", "-/+") and at >= len(symbol):
            line = symbol + line[len(symbol) : at] + " " * len(symbol) + line[at + len(symbol) :]
        out.append(line)
    return "\n".join(out)


def _details(change: ResourceChange) -> str:
    why = next(iter(_why(change)), "")
    summary = (
        f"<code>{escape_html(change.action.look.symbol)}</code> <b>{escape_html(change.address)}"
        f"</b> {_headline(change)}{' — ' + escape_html(why) if why else ''}"
    )
    return (
        f"<details><summary>{summary}</summary>\n\n{fence(_diff_lines(change), 'diff')}\n\n"
        "</details>"
    )


def _grouped(changes: list[ResourceChange]) -> str:
    blocks = []
    for action in SHOWN_ACTIONS:
        group = [c for c in changes if c.action is action]
        if group:
            head = f"**{code_span(action.look.symbol)} {action.look.legend_short}**"
            blocks.append(head + "\n" + "\n".join(f"- {code_span(c.address)}" for c in group))
    return "\n\n".join(blocks)


def _graph(plan: Plan) -> str:
    if not plan.changes():
        return ""
    nodes, edges, actions = changes_graph(plan)
    text = mermaid(nodes, edges, actions)
    if len(nodes) > GRAPH_MAX_NODES or len(edges) > GRAPH_MAX_EDGES or len(text) > GRAPH_MAX_CHARS:
        return (
            f"The graph of the changes has {len(nodes):,} resources and {len(edges):,} edges, too "
            "many for GitHub to draw; `substratus graph` prints it."
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
    return (
        f"---\nPlan SHA-256: {code_span(a.sha256)} · {about}\n\nTo apply exactly this plan: "
        f"{code_span(f'substratus apply {a.plan_file} --expect-sha256 {a.sha256}')}"
    )
