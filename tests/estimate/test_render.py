"""The estimate in every output: the plan JSON (stable keys, round trip), the text section and
the Markdown comment (totals always visible; per-resource table and assumptions collapsed, and
kept only at the two longest budget levels)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from substratus.engine.estimate import estimate
from substratus.engine.estimate_text import money, totals_line
from substratus.engine.mdtext import escape_md
from substratus.engine.plan import Plan
from substratus.engine.plan_document import parse_plan, plan_text
from substratus.engine.plan_estimate import Estimate
from substratus.engine.prices import price_table
from substratus.engine.render import render_plan
from substratus.engine.render_markdown import render_markdown, render_markdown_with_level
from substratus.engine.spec import Prices
from tests.estimate import scenarios as sc
from tests.render.plans import large_plan, layout_problems

SHA = "ab" * 32
ROW_KEYS = {
    "address", "kind", "action", "role", "gpu", "cpu", "memory_gb", "replicas", "spot",
    "duration_seconds", "duration_source", "gpu_hours", "cost", "hourly", "hourly_after",
    "gpus_added", "max_cost",
}  # fmt: skip
TOTAL_KEYS = {
    "jobs", "jobs_unknown", "gpu_hours", "jobs_cost", "hourly", "gpus_added",
    "gpus_added_by_type", "gpus", "cpu", "memory_gb",
}  # fmt: skip


def falcon_replan(tmp: Path, mp: pytest.MonkeyPatch) -> Plan:
    h = sc.applied(sc.falcon(tmp, mp))
    return sc.replan(h, "k8s-instructions.jsonl", "k8s-instructions-v2.jsonl")


def test_the_json_estimate_is_stable_and_survives_a_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = falcon_replan(tmp_path, monkeypatch)
    doc = json.loads(plan_text(plan))["estimate"]
    assert set(doc) == {"currency", "prices", "resources", "totals", "assumptions"}
    assert doc["currency"] == "USD"
    assert set(doc["prices"]) == {
        "source", "date", "spot", "overridden", "gpu_hour", "cpu_hour", "memory_gb_hour",
    }  # fmt: skip
    assert all(set(row) == ROW_KEYS for row in doc["resources"])
    assert set(doc["totals"]) == TOTAL_KEYS
    again = parse_plan(plan_text(plan))
    assert again.estimate == plan.estimate and render_plan(again) == render_plan(plan)


def test_nothing_to_run_is_an_empty_estimate_without_a_section(tmp_path: Path) -> None:
    h = sc.applied(sc.quickstart(tmp_path))
    plan = h.plan()
    assert plan.estimate_json()["resources"] == [] and plan.estimate_json()["totals"]["jobs"] == 0
    assert "Estimate" not in render_plan(plan)
    assert "### Estimate" not in render_markdown(plan, sha256=SHA)


def test_markdown_shows_totals_and_collapses_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = falcon_replan(tmp_path, monkeypatch)
    text = render_markdown(plan, sha256=SHA)
    assert layout_problems(text) == []
    section = text[text.index("### Estimate") : text.index("\n---\n")]
    assert section.startswith(
        "### Estimate\n\n**≈ \\$1.44 for the jobs (6 GPU-hours), no change in what the servers "
        "cost per hour** — an estimate, not a quote, at on-demand prices (Google Cloud list "
        "prices, us-central1, as of 2026-11-28)."
    )
    assert "<details><summary>Per resource (3) and assumptions</summary>" in section
    assert (
        "| `-/+` | `model.falcon-7b-k8s` | 4 × nvidia-l4, 2 vCPU, 64 GB, spot | 1h 30m "
        "| ≈ \\$1.44 |" in section
    )
    assert "- Jobs: each as long as its last successful run" in section


def test_markdown_keeps_only_the_totals_line_at_short_levels() -> None:
    plan = large_plan()
    plan = replace(plan, estimate=Estimate.of(estimate(plan.resource_changes, None, price_table())))
    line = escape_md(totals_line(plan.estimate_json()))[
        1:
    ]  # the Markdown capitalises the first letter
    full = render_markdown_with_level(plan, sha256=SHA, budget=10**9)
    assert full.level == 0 and "Per resource (3,000) and assumptions" in full.text
    seen = set()
    for budget in (10**9, 400_000, 200_000, 65_536, 20_000, 8_000, 4_000, 2_500):
        md = render_markdown_with_level(plan, sha256=SHA, budget=budget)
        seen.add(md.level)
        assert line in md.text
        assert ("<summary>Per resource" in md.text) == (md.level <= 2), md.level
        assert layout_problems(md.text) == []
        assert len(md.text) <= budget or md.level == 8
    assert {0, 3, 5} <= seen


def test_user_text_in_the_price_source_is_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = falcon_replan(tmp_path, monkeypatch)
    source = "ACME | <b>rates</b> *2026* @octo-org/finance"
    table = price_table(Prices(source=source))
    plan = replace(plan, estimate=Estimate.of(estimate(plan.resource_changes, None, table)))
    text = render_markdown(plan, sha256=SHA)
    assert layout_problems(text) == []
    assert "ACME \\| &lt;b&gt;rates&lt;/b&gt; \\*2026\\* @&#8203;octo-org/finance" in text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "$0.00"), (0.004, "< $0.01"), (0.005, "$0.01"), (1234.5, "$1,234.50"), (-0.66, "-$0.66")],
)
def test_money(value: float, text: str) -> None:
    assert money(value) == text
