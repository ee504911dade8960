"""The parts of a plan's GitHub Markdown (``engine.render_markdown`` puts them together and
shortens them): the CI ``RunInfo`` line, the summary, reasons as words (``why``; ``cause``: what a
group of deletes or replacements has in common, exact or broad), the warning's ``CauseGroup``
paragraphs, a resource's collapsed ``details`` with its ``diff`` block (``diff_line`` puts the
action marker in column 0: ``+``, ``-``, ``!`` for ``~`` and ``! -/+`` for a replacement's header),
the drift, the grouped address list, the Mermaid graph (or why it is left out) and a warning
diagnostic. User-controlled text is escaped (``engine.mdtext``). Pure; no I/O.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from substratus.engine.diagnostic import Diagnostic
from substratus.engine.mdtext import code_span, escape_html, escape_md, fence, wrap
from substratus.engine.plan import (
    SHOWN_ACTIONS,
    Action,
    Mode,
    Plan,
    Reason,
    ReasonCode,
    ResourceChange,
)
from substratus.engine.render import render_change, summary_line
from substratus.engine.render_diagnostic import Painter
from substratus.engine.render_graph import changes_graph, mermaid

WRAP = 100  # address lists and reasons wrap at this many characters
INDENT = " " * 4  # a continuation line: never a new block (``mdtext.wrap``)
# Mermaid's defaults (maxTextSize 50,000; maxEdges 500, 280 in some 10.x releases): a larger
# graph shows GitHub's error box instead of a drawing, so it is replaced by a one-line note.
GRAPH_MAX_NODES, GRAPH_MAX_EDGES, GRAPH_MAX_CHARS = 300, 280, 50_000
_NO_BECAUSE = (ReasonCode.ADOPT, ReasonCode.EXTERNAL)


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
class CauseGroup:
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


def summary(plan: Plan) -> str:
    line = f"**{summary_line(plan)}**"
    if plan.mode is Mode.REFRESH_ONLY:
        n = len(plan.drift)
        return (
            f"{line}\n\nThis is a refresh-only plan: applying it records {n:,} "
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


def phrases(change: ResourceChange) -> list[tuple[Reason | None, str]]:
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


def why(change: ResourceChange) -> list[str]:
    return [phrase for _, phrase in phrases(change)]


def cause(change: ResourceChange, broad: bool = False) -> str:
    """What a group of deletes or replacements has in common, escaped: the reasons without the
    resource's own address ("not in the configuration", "because dataset.d changed (…)");
    ``broad``: an input's change without which input ("because a dataset it uses changed")."""
    said: list[str] = []
    for r, phrase in phrases(change):
        code = r.code if r is not None else None
        if code is ReasonCode.NOT_IN_CONFIG:
            phrase = "not in the configuration"
        elif code is ReasonCode.DESTROY:
            phrase = "destroy requested"
        elif broad and r is not None and code is ReasonCode.DEPENDENCY_CHANGED:
            kind = (r.address or "").rsplit("/", 1)[-1].split(".", 1)[0] or "resource"
            phrase = f"because a {kind} it uses changed"
        if phrase not in said:
            said.append(phrase)
    return escape_md("; ".join(said) or "no reason recorded")


def headline(change: ResourceChange) -> str:
    if change.action is Action.CREATE and change.before:
        return "will be created again"
    return change.action.look.headline


def one_line(change: ResourceChange) -> str:
    because = "; ".join(why(change))
    symbol = code_span(change.action.look.symbol)
    text = f"{symbol} {code_span(change.address)} {headline(change)}"
    return f"{text} ({escape_md(because)})" if because else text


def drift(plan: Plan, listed: bool = True, messages: bool = True) -> str:
    """The drift, collapsed: each object with (``messages``) what happened, or only its count."""
    head = (
        f"<details><summary>Objects have changed outside of substratus "
        f"({len(plan.drift):,})</summary>\n\n"
    )
    if not listed:
        return head + "Their list is left out to fit.\n\n</details>"
    lines = []
    for d in plan.drift:
        verb = d.status.verb
        detail = f": {escape_md(d.message)}" if messages else ""
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


def details(change: ResourceChange) -> str:
    first = next(iter(why(change)), "")
    summary = (
        f"<code>{escape_html(change.action.look.symbol)}</code> <b>{escape_html(change.address)}"
        f"</b> {headline(change)}{' — ' + escape_html(first) if first else ''}"
    )
    lines = [diff_line(line) for line in render_change(change, Painter(False))]
    block = fence("\n".join(lines), "diff")
    return f"<details><summary>{summary}</summary>\n\n{block}\n\n</details>"


def grouped(changes: list[ResourceChange]) -> str:
    blocks = []
    for action in SHOWN_ACTIONS:
        group = [c for c in changes if c.action is action]
        if group:
            head = f"**{code_span(action.look.symbol)} {action.look.legend_short}**"
            blocks.append(head + "\n" + "\n".join(f"- {code_span(c.address)}" for c in group))
    return "\n\n".join(blocks)


def graph_command(plan_file: str | None) -> str:
    if plan_file is None:
        return (
            f"{code_span('substratus plan --out plan.json')} then "
            f"{code_span('substratus graph plan.json --format mermaid')} print it"
        )
    return f"{code_span(f'substratus graph {shlex.quote(plan_file)} --format mermaid')} prints it"


def graph_left_out(plan: Plan, plan_file: str | None) -> str:
    if not plan.changes():
        return ""
    return f"The graph of the changes is left out to fit; {graph_command(plan_file)}."


def graph(plan: Plan, plan_file: str | None) -> str:
    if not plan.changes():
        return ""
    nodes, edges, actions = changes_graph(plan)
    text = mermaid(nodes, edges, actions)
    if len(nodes) > GRAPH_MAX_NODES or len(edges) > GRAPH_MAX_EDGES or len(text) > GRAPH_MAX_CHARS:
        return (
            f"The graph of the changes has {len(nodes):,} resources and {len(edges):,} edges, too "
            f"many for GitHub to draw; {graph_command(plan_file)}."
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


def diagnostic(d: Diagnostic) -> str:
    where = d.location()
    text = f"> [!NOTE]\n> **Warning: {escape_md(d.summary)}**"
    if where:
        text += f" ({escape_md(where)})"
    return text + (f"\n> {escape_md(d.detail)}" if d.detail else "")
