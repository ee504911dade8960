"""A plan comment as a GFM renderer sees it: markdown-it-py (CommonMark with GitHub's tables and
strikethrough) parses the text, and ``gfm_problems`` names what would not render as laid out —
``<details>`` blocks unbalanced (an HTML block that closes more than it opened, or ones never
closed), a ``<details>`` whose ``<summary>`` is not closed in its own block, a fence that runs to
the end of the text, raw HTML inline (values must never become HTML). ``warning_text`` is the text
of the ``> [!WARNING]`` alert (a blockquote to CommonMark), code spans included."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

_TAG = re.compile(r"</?details(?:\s[^>]*)?>")


def parse(text: str) -> list[Token]:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(text)


def gfm_problems(text: str) -> list[str]:
    """What would not render as laid out (an empty list: nothing)."""
    lines = text.splitlines()
    problems: list[str] = []
    depth = 0
    for t in parse(text):
        where = f"line {t.map[0] + 1}" if t.map else "?"
        if t.type == "html_block":
            for tag in _TAG.findall(t.content):
                depth += -1 if tag.startswith("</") else 1
                if depth < 0:
                    problems.append(f"{where}: </details> without <details>")
            if t.content.count("<summary>") != t.content.count("</summary>"):
                problems.append(f"{where}: <summary> not closed in its block")
        elif t.type == "fence" and t.map:
            last = lines[t.map[1] - 1].strip() if t.map[1] - 1 > t.map[0] else ""
            if not (last.startswith(t.markup) and set(last) == {t.markup[0]}):
                problems.append(f"{where}: a {t.markup} fence is never closed")
        elif t.type == "inline":
            for c in t.children or []:
                if c.type == "html_inline":
                    problems.append(f"{where}: raw HTML inline: {c.content!r}")
    if depth > 0:
        problems.append(f"{depth} <details> never closed")
    return problems


def warning_text(text: str) -> str:
    """The text of the ``> [!WARNING]`` alert ("" when there is none), one paragraph a line."""
    tokens = parse(text)
    for i, t in enumerate(tokens):
        if t.type != "blockquote_open":
            continue
        paragraphs, depth = [], 0
        for u in tokens[i:]:
            depth += {"blockquote_open": 1, "blockquote_close": -1}.get(u.type, 0)
            if depth == 0:
                break
            if u.type == "inline":
                paragraphs.append("".join(_plain(c) for c in u.children or []))
        if paragraphs and paragraphs[0].startswith("[!WARNING]"):
            return "\n".join(paragraphs)
    return ""


def _plain(token: Token) -> str:
    if token.type in ("softbreak", "hardbreak"):
        return " "
    return token.content
