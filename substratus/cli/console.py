"""Talking to the person at the terminal: the plan as text and the ``yes`` confirmation."""

from __future__ import annotations

import sys

from substratus.cli.errors import use_color
from substratus.engine.diagnostic import fail
from substratus.engine.plan import Plan
from substratus.engine.render import render_plan


def plan_color(no_color: bool) -> bool:
    """Whether the plan is printed in colour: allowed (``use_color``) and stdout a terminal."""
    return use_color(no_color) and sys.stdout.isatty()


def print_plan(plan: Plan, color: bool) -> None:
    """The plan as text, headed by its workspace when that is not ``default``."""
    if plan.workspace != "default":
        print(f"Workspace: {plan.workspace}\n")
    print(render_plan(plan, color=color), end="")


def confirm(question: str, what: str) -> None:
    """Ask ``question``; anything but ``yes`` (or no terminal to ask at) stops the command."""
    if not sys.stdin.isatty():
        raise fail(
            "No confirmation possible",
            f"{what} needs a 'yes' typed at a terminal, and there is none. Review the "
            "plan and pass --auto-approve, or apply a saved plan file.",
        )
    print(f"\n{question}\n  Only 'yes' will be accepted to approve.\n")
    answer = input("  Enter a value: ").strip()
    if answer != "yes":
        raise fail("Apply cancelled", "Nothing was changed.")
