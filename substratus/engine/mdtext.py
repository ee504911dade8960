"""Safe Markdown and HTML text for GitHub comments: escaping, code spans and fences.

User-controlled text (reasons, drift messages, titles and field values from the user's YAML)
must not change the layout of a comment. ``escape_md`` makes text inert in Markdown (inline
context), ``escape_html`` in raw HTML such as ``<summary>``; both return one line (whitespace runs
become one space; control and bidi-override characters are dropped) and break ``@mentions`` with
a zero-width space so a plan never pings anyone. ``escape_md_code`` also turns `` `…` `` pairs
into code spans (for titles such as "workspace `default`"). ``code_span`` and ``fence`` pick a
backtick run longer than any in the text, so the text can never close them (a value holding
`````` or ``</details>`` stays inside its code block). Pure; no I/O.
"""

from __future__ import annotations

import re
import unicodedata

_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_MD_SPECIAL = frozenset("\\`*_[]~|$")  # inline Markdown, GitHub strikethrough, tables and math
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "@": "@&#8203;"}
_HTML = {**_ENTITIES, '"': "&quot;"}
_BACKTICKS = re.compile(r"`+")


def one_line(text: str) -> str:
    """``text`` on one line, without control or bidi-override characters."""
    return "".join(filter(_printable, " ".join(str(text).split())))


def escape_md(text: str) -> str:
    """``text`` as literal inline Markdown on one line."""
    return _md(one_line(text))


def _md(text: str) -> str:
    return "".join("\\" + c if c in _MD_SPECIAL else _ENTITIES.get(c, c) for c in text)


def escape_md_code(text: str) -> str:
    """Like ``escape_md``, but each `` `…` `` pair in ``text`` becomes a (safe) code span."""
    parts = one_line(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: the last one stays literal
        parts[-2:] = [parts[-2] + "`" + parts[-1]]
    return "".join(code_span(p) if i % 2 else _md(p) for i, p in enumerate(parts))


def escape_html(text: str) -> str:
    """``text`` as literal HTML text (e.g. inside ``<summary>``) on one line."""
    return "".join({**_ENTITIES, '"': "&quot;"}.get(c, c) for c in one_line(text))


def _printable(c: str) -> bool:
    return c == "\t" or (c not in _BIDI and unicodedata.category(c) != "Cc")


def _longest_run(text: str) -> int:
    return max((len(m) for m in _BACKTICKS.findall(text)), default=0)


def code_span(text: str) -> str:
    """``text`` as an inline code span on one line, whatever backticks it holds."""
    text = one_line(text)
    ticks = "`" * (_longest_run(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def fence(body: str, info: str = "") -> str:
    """``body`` as a fenced code block (``info`` e.g. ``diff``) that ``body`` cannot close."""
    text = "\n".join("".join(filter(_printable, line)) for line in body.splitlines())
    ticks = "`" * max(3, _longest_run(text) + 1)
    return f"{ticks}{info}\n{text}\n{ticks}"


def wrap(items: list[str], width: int, first: str, indent: str) -> list[str]:
    """``items`` (Markdown already safe: code spans, escaped words) joined by spaces into lines
    of at most ``width`` characters where possible (an item longer than that gets a line of its
    own). The first line starts with ``first``; the others with ``indent``, which must end in
    four spaces (after any ``> ``): then a continuation line can never start a list, heading,
    fence or quote, whatever its first item is, and GitHub joins the lines into one paragraph."""
    lines: list[str] = []
    line = first
    fresh = True  # nothing on the line yet but its prefix
    for item in items:
        if not fresh and len(line) + 1 + len(item) > width:
            lines.append(line)
            line, fresh = indent, True
        line = line + item if fresh else f"{line} {item}"
        fresh = False
    lines.append(line)
    return lines
