"""How the CLI reports failures: diagnostics without tracebacks, exit codes (DESIGN §9).

Exit codes: 0 success / no changes; 1 error; 2 ``plan --detailed-exitcode`` with changes.
An unexpected exception prints one short message and writes the traceback to a debug log.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING

from substratus.cli.console import console

if TYPE_CHECKING:
    from substratus.engine.diagnostic import Diagnostic

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def use_color(no_color: bool) -> bool:
    """Whether diagnostics (stderr) are coloured: ``substratus.cli.console`` decides."""
    return not no_color and console.color(sys.stderr)


def print_diagnostics(diags: Iterable[Diagnostic], color: bool | None = None) -> None:
    """Each diagnostic to stderr, coloured when ``color`` (None: as ``console`` decides)."""
    # the renderer (and the plan model it imports) only when there is something to print
    from substratus.engine.render_diagnostic import Painter, render_diagnostic

    paint = Painter(use_color(False) if color is None else color)
    for d in diags:
        print(render_diagnostic(d, paint), file=sys.stderr)


def report_unexpected(exc: BaseException) -> str:
    """Write the traceback to a debug log and return its path."""
    path = os.path.join(tempfile.gettempdir(), f"substratus-debug-{os.getpid()}.log")
    with open(path, "w", encoding="utf-8") as fh:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=fh)
    return path
