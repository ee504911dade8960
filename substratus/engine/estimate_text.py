"""Words for a plan's estimate (``engine.estimate``'s document), shared by every output.

``text_section(est, paint)`` is the section ``render_plan`` prints after the ``Plan:`` line: one
row per resource that runs (action symbol, address, what it requests, how long or "serves",
cost or change per hour), the totals line and the assumptions. ``markdown_section(est, full)``
is the PR comment's: the totals always, the rows and assumptions in a collapsed ``<details>``
table when ``full``. Both are empty when nothing runs. ``assumptions`` words what an estimate
assumes (stored in the document when it is made). The helpers (``money``, ``duration``, ``uses``,
``describe``, ``price_label``, ``totals_line``) also word the cost-limit diagnostics. Renderers
read only the document, so a saved plan renders as it was made. Pure; no I/O.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from substratus.engine.mdtext import code_span, escape_md
from substratus.engine.plan import Action

Paint = Callable[[str, str], str]


def money(value: float) -> str:
    """``$1,234.50``, ``-$0.66``; ``< $0.01`` for a positive amount that rounds to nothing."""
    sign = "-" if value < 0 else ""
    v = abs(value)
    if 0 < v < 0.005:
        return f"{sign}< $0.01"
    return f"{sign}${v:,.2f}"


def duration(seconds: float) -> str:
    """``45s``, ``3m 05s``, ``1h 30m``, ``2d 4h``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _num(value: float) -> str:
    return f"{value:g}"


def gpu_hours(value: float) -> str:
    """Two significant digits below 10 (``0.17``, ``6``), whole numbers above (``1,250``)."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def uses(e: Mapping[str, Any]) -> str:
    """``4 × nvidia-l4, 2 vCPU, 64 GB`` (per instance; ``2 × (…)`` for replicas, ``2 nodes ×
    (…)`` for a job spanning nodes)."""
    parts = []
    if e["gpu"]:
        parts.append(f"{e['gpu']['count']} × {e['gpu']['type'] or 'GPU'}")
    parts.append(f"{_num(e['cpu'])} vCPU")
    if e["memory_gb"]:
        parts.append(f"{_num(e['memory_gb'])} GB")
    if e.get("spot"):  # rows of plans saved before resources.spot have no such key
        parts.append("spot")
    text = ", ".join(parts)
    if e.get("nodes", 1) > 1:
        return f"{e['nodes']:,} nodes × ({text})"
    return f"{e['replicas']:,} × ({text})" if e["role"] == "service" and e["replicas"] > 1 else text


def describe(e: Mapping[str, Any]) -> str:
    """What a row requests and, for a job of known duration, for how long."""
    if e["role"] == "job" and e["duration_seconds"] is not None:
        return f"{uses(e)} for {duration(e['duration_seconds'])}, its last run"
    return uses(e)


def price_label(prices: Mapping[str, Any]) -> str:
    """``on-demand prices (Google Cloud list prices, us-central1, as of 2026-11-28)``."""
    mode = "spot" if prices.get("spot") else "on-demand"
    date = ""
    if prices.get("date"):
        date = f", {'list prices of' if prices.get('overridden') else 'as of'} {prices['date']}"
    return f"{mode} prices ({prices.get('source', 'unknown source')}{date})"


def gpus_text(by_type: Mapping[str, int]) -> str:
    """``+1 × nvidia-a100, -1 × nvidia-l4``."""
    return ", ".join(f"{'+' if n > 0 else '-'}{abs(n):,} × {t}" for t, n in by_type.items())


def totals_line(est: Mapping[str, Any]) -> str:
    """``≈ $X for the jobs (N GPU-hours), + $Y/hour for the servers (+1 × nvidia-l4)``."""
    t, entries = est["totals"], est["resources"]
    parts = []
    unknown = t["jobs_unknown"]
    if t["jobs"] and unknown == t["jobs"]:
        parts.append(f"cost of the jobs unknown ({unknown:,} without a successful run recorded)")
    elif t["jobs"]:
        notes = [f"{gpu_hours(t['gpu_hours'])} GPU-hours"] if t["gpu_hours"] else []
        if unknown:
            notes.append(f"{unknown:,} of unknown duration not counted")
        note = f" ({'; '.join(notes)})" if notes else ""
        parts.append(f"≈ {money(t['jobs_cost'])} for the jobs{note}")
    kinds = {e["kind"] for e in entries if e["role"] == "service"}
    if kinds:
        what = " and ".join(
            k for k, n in (("servers", "modelserver"), ("notebooks", "notebook")) if n in kinds
        )
        sign = "-" if t["hourly"] < 0 else "+"
        gpus = f" ({gpus_text(t['gpus_added_by_type'])})" if t["gpus_added_by_type"] else ""
        if not t["hourly"] and not gpus:
            parts.append(f"no change in what the {what} cost per hour")
        else:
            parts.append(f"{sign} {money(abs(t['hourly']))}/hour for the {what}{gpus}")
    return ", ".join(parts)


def assumptions(
    entries: list[dict[str, Any]], prices: Mapping[str, Any], runtime: str | None
) -> list[str]:
    """What an estimate of ``entries`` assumes, in words (the document's ``assumptions``)."""
    unknown = sum(e["role"] == "job" and e["cost"] is None for e in entries)
    out = [
        f"At {price_label(prices)} per hour of the GPUs, vCPUs and memory "
        "requested; not counted: node overhead, disks, storage, network.",
    ]
    if any(e["role"] == "job" for e in entries):
        out.append(
            "Jobs: each as long as its last successful run recorded in the state; what changed "
            "since may make it longer or shorter."
        )
    if unknown:
        out.append(
            f"{unknown:,} job{'s' if unknown != 1 else ''} of unknown duration (no successful "
            f"run recorded) {'are' if unknown != 1 else 'is'} not counted."
        )
    services = [e for e in entries if e["role"] == "service"]
    if services:
        rolling = any(Action(e["action"]) in (Action.UPDATE, Action.REPLACE) for e in services)
        how = (
            "; a local update stops the old process before it starts the new one."
            if runtime == "local"
            else "; a rolling update briefly runs both versions."
        )
        out.append(
            "Servers and notebooks: the change in what runs continuously"
            + (how if rolling else ".")
        )
    if any(e["kind"] == "build" for e in entries):
        out.append("Builds: the build Job's request of 2 vCPU.")
    if not prices.get("spot") and any(e.get("spot") for e in entries):
        out.append("Resources with resources.spot: at spot rates.")
    if any(e["gpu"] and not e["gpu"]["type"] for e in entries):
        out.append("GPUs without a type are not priced.")
    if runtime == "local":
        out.append(
            "Local runtime: everything runs on this machine and nothing is billed; these are "
            "what the same requests would cost in the cloud."
        )
    return out


def _when(e: Mapping[str, Any]) -> str:
    if e["role"] == "service":
        return (
            "stops" if Action(e["action"]) is Action.DELETE or not e["hourly_after"] else "serves"
        )
    if e["duration_seconds"] is not None:
        return duration(e["duration_seconds"])
    return "last run failed" if e["duration_source"] == "last_run_failed" else "unknown duration"


def _cost(e: Mapping[str, Any]) -> str:
    if e["role"] == "service":
        sign = "-" if e["hourly"] < 0 else "+"
        return f"{sign} {money(abs(e['hourly']))}/hour"
    if e["cost"] is None:
        return ""
    cost = money(e["cost"])
    return cost if cost.startswith("<") else f"≈ {cost}"


def _rows(est: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    return [
        (Action(e["action"]).symbol, e["address"], uses(e), _when(e), _cost(e))
        for e in est["resources"]
    ]


def text_section(est: Mapping[str, Any], paint: Paint) -> list[str]:
    """The lines of the plan text's estimate section (none when nothing runs)."""
    if not est.get("resources"):
        return []
    rows = _rows(est)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = [paint("Estimate of what this apply will consume (not a quote):", "bold")]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in (1, 2, 3)]
        out.append(f"{row[0].rjust(3)} {'   '.join(cells)}   {row[4]}".rstrip())
    total = textwrap.wrap(f"Total: {totals_line(est)}.", 100, subsequent_indent="       ")
    out += ["", *(paint(line, "bold") for line in total)]
    for note in est["assumptions"]:
        wrapped = textwrap.wrap(note, 96, initial_indent="  # ", subsequent_indent="  #   ")
        out += [paint(line, "dim") for line in wrapped]
    return out


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def markdown_section(est: Mapping[str, Any], full: bool) -> str:
    """The PR comment's estimate section: totals; rows and assumptions too when ``full``."""
    if not est.get("resources"):
        return ""
    totals = escape_md(_capital(totals_line(est)))
    prices = escape_md(price_label(est["prices"]))
    head = f"### Estimate\n\n**{totals}** — an estimate, not a quote, at {prices}."
    if not full:
        return head
    table = ["| | resource | uses | duration | cost |", "|---|---|---|---|---|"]
    for sym, address, what, when, cost in _rows(est):
        cells = [code_span(sym), code_span(address), escape_md(what), escape_md(when)]
        table.append(f"| {' | '.join(cells)} | {escape_md(cost) or '—'} |")
    notes = "\n".join(f"- {escape_md(a)}" for a in est["assumptions"])
    n = len(est["resources"])
    return (
        f"{head}\n\n<details><summary>Per resource ({n:,}) and assumptions</summary>\n\n"
        + "\n".join(table)
        + f"\n\n{notes}\n\n</details>"
    )
