"""Escaping for GitHub Markdown (``engine.mdtext``): nothing a user writes changes the layout."""

from __future__ import annotations

from substratus.engine.mdtext import (
    code_span,
    escape_html,
    escape_md,
    escape_md_code,
    fence,
    one_line,
)


def test_one_line_drops_breaks_controls_and_bidi_overrides() -> None:
    assert one_line("a\n\n b\r\tc\x1b[31md\x00\u202eevil\u2066") == "a b c[31mdevil"


def test_escape_md() -> None:
    text = "*b* _i_ `c` [l](u) ~~s~~ | $m$ \\ <b>&amp; @team #1"
    assert escape_md(text) == (
        "\\*b\\* \\_i\\_ \\`c\\` \\[l\\](u) \\~\\~s\\~\\~ \\| \\$m\\$ \\\\ &lt;b&gt;&amp;amp; "
        "@&#8203;team #1"
    )
    assert escape_md("line\n# heading\n---") == "line # heading ---"


def test_escape_html() -> None:
    assert escape_html('</summary>"x" & @me\n<b>') == (
        "&lt;/summary&gt;&quot;x&quot; &amp; @&#8203;me &lt;b&gt;"
    )


def test_code_span_holds_any_backticks() -> None:
    assert code_span("model.x") == "`model.x`"
    assert code_span("a`b") == "``a`b``"
    assert code_span("`x``") == "``` `x`` ```"
    assert code_span("two\nlines") == "`two lines`"


def test_title_code_spans() -> None:
    assert escape_md_code("workspace `default` in `quick*start`") == (
        "workspace `default` in `quick*start`"
    )
    assert escape_md_code("a `b` c` *d*") == "a `b` c\\` \\*d\\*"
    assert escape_md_code("<b>`</b>`") == "&lt;b&gt;`</b>`"


def test_fence_cannot_be_closed_from_inside() -> None:
    assert fence("x = 1", "diff") == "```diff\nx = 1\n```"
    body = "```\n</details>\n````"
    block = fence(body, "diff")
    assert block == "`````diff\n```\n</details>\n````\n`````"
    assert fence("a\x1b[0m\tb\u202e") == "```\na[0m\tb\n```"
