"""Talking to the person at the terminal: whether output is coloured, the plan as text, and the
``yes`` confirmation.

``console`` is the one object that decides colour for every output of the CLI (the plan,
``Error:`` lines, live progress): colour only where the stream is a terminal, and never once
``--no-color`` was given (the option's callback calls ``console.disable()`` while the command
line is parsed, before anything prints) or ``NO_COLOR`` is set to a non-empty value
(no-color.org). Without colour the live progress view, which moves the cursor with escape
sequences, gives way to plain lines: no escape sequence is written at all.

This module imports nothing heavy (the plan renderer and rich only when called).
"""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING

from substratus.engine.diagnostic import fail

if TYPE_CHECKING:
    import rich.console

    from substratus.engine.plan import Plan


class Terminal:
    """The colour decision for this process (one instance: ``console``)."""

    def __init__(self) -> None:
        self.disabled = False

    def disable(self) -> None:
        """No colour from now on (``--no-color``)."""
        self.disabled = True

    @property
    def allowed(self) -> bool:
        """Colour is allowed: neither ``--no-color`` nor a non-empty ``NO_COLOR``."""
        return not self.disabled and not os.environ.get("NO_COLOR")

    def color(self, stream: IO[str] | None = None) -> bool:
        """Whether to colour what is written to ``stream`` (default stdout): allowed, and the
        stream a terminal."""
        out = stream if stream is not None else sys.stdout
        try:
            return self.allowed and out.isatty()
        except (AttributeError, ValueError):  # a closed or file-less stream
            return False

    def live(self) -> bool:
        """Whether apply shows the live view (cursor movement) rather than plain lines."""
        return self.color(sys.stdout)

    def rich(self) -> rich.console.Console:
        """A rich console for stdout that colours exactly when ``color()`` says so."""
        from rich.console import Console

        colored = self.color(sys.stdout)
        return Console(no_color=not colored, force_terminal=colored or None)


console = Terminal()


def no_color_option(value: bool) -> bool:
    """The ``--no-color`` option's callback: given, it turns colour off for the whole run."""
    if value:
        console.disable()
    return value


def plan_color(no_color: bool) -> bool:
    """Whether the plan is printed in colour (``console`` decides, for stdout)."""
    return not no_color and console.color(sys.stdout)


def print_plan(plan: Plan, color: bool) -> None:
    """The plan as text, headed by its workspace when that is not ``default``."""
    from substratus.engine.render import render_plan

    if plan.workspace != "default":
        print(f"Workspace: {plan.workspace}\n")
    print(render_plan(plan, color=color), end="")


def confirm(question: str, what: str, *, no_input: bool = False, quiet: bool = False) -> None:
    """Ask ``question`` and read the answer from standard input, a terminal or not (as Terraform
    does: ``echo yes | substratus apply`` approves); anything but ``yes``, or no answer at all,
    stops the command (exit 1) before anything changed. ``no_input`` (``--no-input``): asking
    is itself the error. ``quiet`` (``--json``): the question goes to stderr, keeping stdout
    machine-readable. ``what`` names the operation (``apply``) in the messages."""
    if no_input:
        raise fail(
            "Confirmation needed and --no-input given",
            f"{what} asks for a 'yes' before it changes anything, and --no-input forbids "
            "asking. Review the plan and pass --auto-approve, or apply a saved plan file.",
        )
    out = sys.stderr if quiet else sys.stdout
    print(f"\n{question}\n  Only 'yes' will be accepted to approve.\n", file=out)
    print("  Enter a value: ", end="", file=out, flush=True)
    try:
        answer = input().strip()
    except EOFError:
        print(file=out)
        raise fail(
            f"{what.capitalize()} cancelled",
            "Standard input ended without an answer, so nothing was changed. Type 'yes' at "
            "the prompt, pipe it (echo yes | substratus ...), or pass --auto-approve.",
        ) from None
    if not sys.stdin.isatty():
        print(file=out)  # a piped answer is not echoed: end the prompt's line
    if answer != "yes":
        raise fail(f"{what.capitalize()} cancelled", "Nothing was changed.")
