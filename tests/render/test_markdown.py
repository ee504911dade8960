"""The Markdown rendering of a plan (PR comment / job summary, DESIGN §10).

Golden cases under ``tests/render/golden/<case>.md`` are plans made by the planner (small,
destructive, no changes); run with ``UPDATE_GOLDEN=1`` to rewrite them after reviewing a
deliberate change, as for ``tests/cases``. The large plan (3,150 resources, far over GitHub's
65,536 characters) is checked by its rules instead of a golden file: the budget, the summary
line, every delete and replace in the never-shortened warning section, the notice, each
shortening level in turn, and determinism. Every text is also checked for its layout (fences
and ``<details>`` closed, no raw HTML from values) and its Mermaid graph for structure.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from substratus.engine.diagnostic import Diagnostic
from substratus.engine.plan import (
    Action,
    Drift,
    DriftStatus,
    Mode,
    Plan,
    Reason,
    ReasonCode,
    ResourceChange,
)
from substratus.engine.render_graph import check_mermaid
from substratus.engine.render_markdown import (
    GITHUB_COMMENT_LIMIT,
    LEVELS,
    render_markdown,
    render_markdown_with_level,
)
from substratus.engine.sensitive import MARK, is_marker
from tests.render.plans import (
    destructive_plan,
    large_plan,
    layout_problems,
    mermaid_block,
    no_changes_plan,
    small_plan,
)

GOLDEN = Path(__file__).parent / "golden"
SHA = "5f2b" * 16
NOTICE = "This comment is shortened to fit GitHub's 65,536-character limit"
CASES: dict[str, Callable[[Path], Plan]] = {
    "small": small_plan,
    "destructive": destructive_plan,
    "no-changes": no_changes_plan,
}
# Where each golden case's plan was saved (None: not saved, as `plan --format markdown` alone).
SAVED_AS: dict[str, str | None] = {
    "small": "plan.json",
    "destructive": "out/reviewed.json",
    "no-changes": None,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, tmp_path: Path) -> None:
    plan = CASES[case](tmp_path)
    saved = SAVED_AS[case]
    title = f"substratus plan: `default` · examples/{case}"
    got = render_markdown(plan, sha256=SHA, title=title, plan_file=saved)
    expected = GOLDEN / f"{case}.md"
    if os.environ.get("UPDATE_GOLDEN"):
        expected.write_text(got, encoding="utf-8")
    assert expected.exists(), f"no expectation yet: run with UPDATE_GOLDEN=1 and review {case}"
    assert got == expected.read_text(encoding="utf-8")
    assert layout_problems(got) == []
    assert_footer(got, saved)
    assert "Plan: " in got and NOTICE not in got
    if plan.changes():
        assert check_mermaid(mermaid_block(got)) == []
    else:
        assert "No changes. Your resources match the configuration." in got
        assert "```mermaid" not in got and "[!WARNING]" not in got


def assert_footer(text: str, saved: str | None) -> None:
    """A saved plan names its file and hash; an unsaved one names neither and says so."""
    if saved is not None:
        assert f"Plan SHA-256: `{SHA}`" in text
        assert text.endswith(
            f"To apply exactly this plan: `substratus apply {shlex.quote(saved)} "
            f"--expect-sha256 {SHA}`\n"
        )
    else:
        assert SHA not in text and "Plan SHA-256" not in text
        assert "This plan was not saved, so it cannot be applied exactly as shown." in text
        assert "`substratus plan --out plan.json`" in text
        assert "To apply exactly this plan" not in text


def test_the_footer_names_the_saved_file_or_says_the_plan_was_not_saved(tmp_path: Path) -> None:
    plan = small_plan(tmp_path)
    assert_footer(render_markdown(plan, sha256=SHA), None)
    assert_footer(render_markdown(plan, sha256=SHA, plan_file="ci/p 1.json"), "ci/p 1.json")
    for budget in (GITHUB_COMMENT_LIMIT, 1500):
        assert_footer(render_markdown(large_plan(), sha256=SHA, budget=budget), None)


def test_destructive_changes_are_all_in_the_warning(tmp_path: Path) -> None:
    plan = destructive_plan(tmp_path)
    text = render_markdown(plan, sha256=SHA)
    warning = text.split("> [!WARNING]\n", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"^> - `(-/\+|-)` `([^`]+)`", warning, flags=re.M)
    assert listed == [
        ("-/+", "dataset.squad"),
        ("-/+", "model.base"),
        ("-/+", "model.tuned"),
        ("-", "notebook.dev"),
        ("-", "modelserver.old"),
    ]
    assert "2 to destroy, 3 to replace" in warning
    assert "because spec.loader.params.limit" in warning and "--replace" in warning
    drift = text.split("<details><summary>Objects have changed outside of substratus (1)")[1]
    assert drift.split("</details>")[0].count("\n- ") == 1


def test_values_cannot_break_the_layout(tmp_path: Path) -> None:
    text = render_markdown(destructive_plan(tmp_path), sha256=SHA)
    assert layout_problems(text) == []
    # The value is verbatim inside a longer fence, so its ``` and </details> are plain text.
    assert "\n````diff\n" in text
    assert '-> "```\\n</details></summary>\\n<script>' in text
    assert text.count("</details>") == text.count("<details") + 1  # + the one in the value


def test_user_text_is_escaped_outside_code() -> None:
    evil = "`x` </summary></details><img src=x> **bold** [link](http://e) @octo-org/admins $m$"
    change = ResourceChange(
        "model.tuned",
        "model",
        "default",
        "tuned",
        Action.REPLACE,
        [
            Reason(ReasonCode.DRIFT, evil),
            Reason(ReasonCode.FIELD_CHANGED, "p changed", "spec.params.`k`"),
        ],
        {"params": {"`k`": "```"}},
        {"params": {"`k`": "```\n</details>"}},
    )
    plan = Plan(Mode.NORMAL, [change], substratus_version="0.0.0-test")
    for budget in (GITHUB_COMMENT_LIMIT, 1200):
        text = render_markdown(plan, sha256=SHA, title="<b>ws</b> `x`", budget=budget)
        assert layout_problems(text) == []
        outside = re.sub(r"^(`{3,})\w*\n.*?\n\1$", "", text, flags=re.S | re.M)
        assert (
            "<img" not in outside
            and "<b>ws" not in outside
            and "</summary></details>" not in outside
        )
        assert "@octo-org" not in outside and "@&#8203;octo-org" in outside
        assert "\\*\\*bold\\*\\*" in outside and "\\[link\\]" in outside and "\\$m\\$" in outside
    full = render_markdown(plan, sha256=SHA)
    assert "<b>model.tuned</b> must be replaced — because spec.params.`k` changed</summary>" in full
    change = replace(change, reasons=[Reason(ReasonCode.DRIFT, evil)])  # the first reason now
    plan = Plan(Mode.NORMAL, [change], substratus_version="0.0.0-test")  # shown in <summary>
    full = render_markdown(plan, sha256=SHA)
    assert (
        "must be replaced — because `x` &lt;/summary&gt;&lt;/details&gt;&lt;img src=x&gt; "
        "**bold** [link](http://e) @&#8203;octo-org/admins $m$</summary>" in full
    )
    assert layout_problems(full) == []


def _fingerprints(value: object) -> list[str]:
    if isinstance(value, dict):
        if is_marker(value):
            return [str(value[MARK])]
        return [f for v in value.values() for f in _fingerprints(v)]
    return []


def test_sensitive_values_stay_masked(tmp_path: Path) -> None:
    plan = destructive_plan(tmp_path)
    hidden = [f for c in plan.resource_changes for f in _fingerprints(c.before)]
    hidden += [f for c in plan.resource_changes for f in _fingerprints(c.after)]
    assert len(hidden) == 2  # the old and the new token
    texts = [render_markdown(plan, sha256=SHA, budget=b) for b in (GITHUB_COMMENT_LIMIT, 2000)]
    texts.append(render_markdown(small_plan(tmp_path / "s"), sha256=SHA))
    for text in texts:
        assert "hunter2" not in text
        assert not any(f in text or f.removeprefix("sha256:") in text for f in hidden)
    assert "loader.params.token = (sensitive) -> (sensitive)  # forces replacement" in texts[0]
    assert "loader.params.token  = (sensitive)" in texts[2]


def test_large_plan_fits_the_comment_limit() -> None:
    plan = large_plan()
    result = render_markdown_with_level(plan, sha256=SHA, title="big", plan_file="plan.json")
    text = result.text
    assert len(plan.resource_changes) >= 3000
    assert len(text) <= GITHUB_COMMENT_LIMIT
    assert result.level == 5, LEVELS[result.level]
    assert "**Plan: 2,850 to add, 200 to change, 250 to destroy. Replacements: " in text
    assert f"_{NOTICE}.\n`substratus show plan.json` prints the full plan._" in text
    warning = text.split("> [!WARNING]\n", 1)[1].split("\n\n", 1)[0]
    for c in plan.resource_changes:
        if c.action in (Action.DELETE, Action.REPLACE):
            assert f"`{c.address}`" in warning, c.address
    assert "100 to destroy, 150 to replace" in warning
    assert "> - `-/+` `model.m0149` must be replaced (because dataset.d0149 changed)" in warning
    more = re.search(r"^… and ([\d,]+) more resources\.$", text, flags=re.M)
    assert more
    shown = len(re.findall(r"^- `", text.split("### Resources (3,150)")[1], flags=re.M))
    assert shown > 0 and shown + int(more.group(1).replace(",", "")) == 3150
    assert "```mermaid" not in text
    assert "The graph of the changes is left out to fit; `substratus graph plan.json" in text
    assert_footer(text, "plan.json")
    assert render_markdown(large_plan(), sha256=SHA, title="big", plan_file="plan.json") == text
    assert layout_problems(text) == []


def test_each_level_in_turn() -> None:
    """With each budget just below the previous text's size, the text gets shorter, level by
    level, each within its budget, until not even the last level fits."""
    plan = large_plan(creates=15, updates=3, replaces=4, deletes=30)
    budget, seen = 10**9, list[int]()
    while True:
        result = render_markdown_with_level(plan, sha256=SHA, budget=budget, plan_file="p.json")
        assert (
            render_markdown_with_level(plan, sha256=SHA, budget=budget, plan_file="p.json")
            == result
        )
        assert layout_problems(result.text) == []
        assert ("is shortened to fit" in result.text) == (result.level > 0)
        if not seen or seen[-1] != result.level:
            seen.append(result.level)
        if len(result.text) > budget:
            break
        budget = len(result.text) - 1
    # 8 (broader causes, every address) is longer than 7 here: it helps only with many groups
    assert seen == [0, 1, 2, 3, 4, 5, 6, 7, 9, 10]
    assert result.level == len(LEVELS) - 1
    assert "**Plan: 19 to add, 3 to change, 34 to destroy. Replacements: 4," in result.text
    assert "> **This list is incomplete:** 34 more resources in 2 groups." in result.text
    assert_footer(result.text, "p.json")


def test_level_contents() -> None:
    plan = large_plan(creates=15, updates=3, replaces=2, deletes=1)
    by_level = {}
    budget = 10**9
    while (r := render_markdown_with_level(plan, sha256=SHA, budget=budget)).level < 5:
        by_level[r.level] = r.text
        budget = len(r.text) - 1
    by_level[r.level] = r.text
    assert sorted(by_level) == [0, 1, 2, 3, 4, 5]
    assert "<details><summary><code>+</code> <b>dataset.d0000</b>" in by_level[0]
    part = by_level[1].split("resources, one line each, to fit:\n\n")
    assert "<details><summary>" in part[0] and "<details><summary>" not in part[1]
    assert part[1].startswith("- `")
    assert "- `+` `dataset.d0000` will be created\n" in by_level[2]
    assert (
        "- `~` `team-b/modelserver.s0000` will be updated in-place (because spec.replicas changed)"
        in by_level[2]
    )
    for level in (3, 4, 5):
        assert "**`+` create**\n- `dataset.d0000`\n" in by_level[level]
        assert "because spec.replicas" not in by_level[level].split("### Resources")[1]
    assert all("```mermaid" in by_level[lv] for lv in (0, 1, 2, 3))
    assert all("```mermaid" not in by_level[lv] for lv in (4, 5))
    assert all("The graph of the changes is left out" in by_level[lv] for lv in (4, 5))
    assert "… and " not in by_level[4]
    assert "Their list is left out to fit." in by_level[5]  # drift: only its count
    plan = large_plan(creates=150, updates=30, replaces=20, deletes=10)
    cut = render_markdown_with_level(plan, sha256=SHA, budget=5000)
    assert cut.level == 5 and len(cut.text) <= 5000
    assert re.search(r"^… and \d+ more resources\.$", cut.text, flags=re.M)
    assert "the full plan is in" not in cut.text and "job summary" not in cut.text


@pytest.mark.parametrize(("deletes", "level"), [(3000, 6), (6000, 7)])
def test_warning_section_is_grouped_by_cause_only_when_it_alone_does_not_fit(
    deletes: int, level: int
) -> None:
    plan = large_plan(creates=0, updates=0, replaces=0, deletes=deletes)
    plan = replace(plan, mode=Mode.DESTROY)
    result = render_markdown_with_level(plan, sha256=SHA)
    assert len(result.text) <= GITHUB_COMMENT_LIMIT
    assert result.level == level, LEVELS[result.level]
    warning = result.text.split("> [!WARNING]\n", 1)[1].split("\n\n", 1)[0]
    assert f"**Destructive changes: {deletes:,} to destroy.**" in warning
    head = f"> **`-` {deletes:,} destroyed**: not in the configuration: `notebook.n0000`,"
    assert head in warning
    listed = re.findall(r"`(notebook\.n\d+)`", warning)
    assert listed == [f"notebook.n{i:04}" for i in range(len(listed))]
    assert max(len(line) for line in warning.splitlines()) <= 110
    if level == 6:
        assert len(listed) == deletes and "more" not in warning
    else:
        assert len(result.text) > GITHUB_COMMENT_LIMIT - 100  # filled up to the limit
        assert warning.endswith(f"… and {deletes - len(listed):,} more.")
    assert f"The list of the {deletes:,} resources is left out to fit." in result.text
    assert render_markdown_with_level(plan, sha256=SHA) == result
    assert layout_problems(result.text) == []


def test_modes_and_plan_warnings() -> None:
    drift = [Drift("modelserver.api", DriftStatus.MISSING, "the process is gone")]
    drift.append(Drift("model.tuned", DriftStatus.PENDING_RUNNING, "job tuned-1 is still running"))
    refresh = Plan(Mode.REFRESH_ONLY, [], drift, substratus_version="0.0.0-test")
    text = render_markdown(refresh, sha256=SHA)
    assert "records 2 objects changed outside of substratus in the state" in text
    assert "- `modelserver.api` has been deleted: the process is gone" in text
    assert "- `model.tuned` has an interrupted operation (running): job tuned-1" in text
    assert "mode `refresh-only`" in text and "```mermaid" not in text
    warning = Diagnostic.warning("Deprecated *field*", "Use `x`.", address="model.a")
    destroy = Plan(Mode.DESTROY, [], warnings=[warning], substratus_version="0.0.0-test")
    text = render_markdown(destroy, sha256=SHA)
    assert "No changes. No objects need to be destroyed." in text
    assert "> [!NOTE]\n> **Warning: Deprecated \\*field\\*** (model.a)\n> Use \\`x\\`." in text
    assert layout_problems(text) == []


def test_many_causes_are_grouped_by_the_kind_of_input_that_changed() -> None:
    """3,000 replacements, each because its own dataset changed: one group per input would not
    fit even with one address each, so they are grouped by the kind of input, all listed."""
    plan = large_plan(creates=0, updates=0, replaces=3000, deletes=0)
    result = render_markdown_with_level(plan, sha256=SHA, plan_file="plan.json")
    assert result.level == 8, LEVELS[result.level]
    warning = result.text.split("> [!WARNING]\n", 1)[1].split("\n\n", 1)[0]
    assert "> **`-/+` 3,000 replaced** because a dataset it uses changed: `model.m0000`," in warning
    assert len(re.findall(r"`model\.m\d{4}`", warning)) == 3000
    assert warning.endswith("`model.m2999`.")
    assert max(len(line) for line in result.text.splitlines()) <= 150
    assert layout_problems(result.text) == []
