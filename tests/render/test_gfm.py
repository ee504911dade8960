"""Plan comments rendered by a real GFM parser (markdown-it-py, ``tests/render/gfm.py``): for a
small plan, a destructive one, and synthetic plans of 161 and 3,000 resources, as a pull request
comment (65,536 characters) and as a job summary (1 MiB), the token structure is sound —
``<details>``/``<summary>`` HTML blocks balanced, every fence closed, no value turned into inline
HTML — and the ``> [!WARNING]`` alert names every delete and replacement with its reason, as
text. A checker that misses a broken comment is no check: a cut text must fail it."""

from __future__ import annotations

from pathlib import Path

import pytest

from substratus.engine.plan import Action, Plan
from substratus.engine.render_markdown import GITHUB_COMMENT_LIMIT, render_markdown
from tests.render.gfm import gfm_problems, warning_text
from tests.render.plans import destructive_plan, large_plan, small_plan

SHA = "5f2b" * 16
SUMMARY_LIMIT = 1024 * 1024  # bytes: GitHub's job summary


def plans(tmp_path: Path) -> dict[str, Plan]:
    return {
        "small": small_plan(tmp_path / "small"),
        "destructive": destructive_plan(tmp_path / "destructive"),
        "161": large_plan(creates=100, updates=20, replaces=25, deletes=16),
        "3000": large_plan(creates=2600, updates=150, replaces=150, deletes=100),
    }


@pytest.mark.parametrize("where", ["comment", "summary"])
def test_every_plan_renders_balanced_with_its_reasons_in_the_warning(
    tmp_path: Path, where: str
) -> None:
    for name, plan in plans(tmp_path).items():
        assert len(plan.resource_changes) == {"161": 161, "3000": 3000}.get(
            name, len(plan.resource_changes)
        )
        if where == "comment":
            text = render_markdown(plan, sha256=SHA, title=name, plan_file="plan.json")
            assert len(text) <= GITHUB_COMMENT_LIMIT
        else:
            text = render_markdown(
                plan, sha256=SHA, title=name, budget=SUMMARY_LIMIT, unit="bytes", plan_file="p"
            )
        assert gfm_problems(text) == [], name
        destructive = [
            c for c in plan.resource_changes if c.action in (Action.DELETE, Action.REPLACE)
        ]
        warning = warning_text(text)
        assert bool(warning) == bool(destructive), name
        for c in destructive:
            assert c.address in warning, (name, c.address)
            for r in c.reasons:
                said = r.path if r.path and r.code.is_field else r.message  # fields: one phrase
                assert said in warning, (name, c.address, said)


def test_the_checker_finds_what_would_break(tmp_path: Path) -> None:
    text = render_markdown(small_plan(tmp_path), sha256=SHA, title="t", plan_file="plan.json")
    assert gfm_problems(text) == []
    fence = text.index("```diff\n")
    assert any("never closed" in p for p in gfm_problems(text[: fence + 20]))
    details = text.index("<details")
    assert "1 <details> never closed" in gfm_problems(text[: text.index("\n\n", details)])
    extra = text + "\n\n</details>\n"
    assert any("</details> without <details>" in p for p in gfm_problems(extra))
    assert any("raw HTML" in p for p in gfm_problems("a <b>value</b>\n"))
