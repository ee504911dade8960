"""A diagnostic as the CLI prints it (``Error: summary``, ``on file:line``, the detail
indented), and the ``Painter`` that colours text. Apart from ``engine.render`` (which re-exports
both) so that printing an error or a warning imports no plan, estimate or pydantic model.
"""

from __future__ import annotations

from substratus.engine.diagnostic import Diagnostic

_COLORS = {"green": "32", "yellow": "33", "red": "31", "cyan": "36", "bold": "1", "dim": "2"}


class Painter:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, style: str) -> str:
        if not self.color:
            return text
        return f"\033[{_COLORS[style]}m{text}\033[0m"


def render_diagnostic(d: Diagnostic, paint: Painter | None = None) -> str:
    paint = paint or Painter(False)
    label = paint("Error:", "red") if d.is_error else paint("Warning:", "yellow")
    out = f"{label} {d.summary}"
    where = d.location()
    if where:
        out += f"\n\n  on {where}"
    if d.detail:
        out += "\n\n" + "\n".join("  " + line for line in d.detail.splitlines())
    return out + "\n"


__all__ = ["Painter", "render_diagnostic"]
