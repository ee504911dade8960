"""What a change does: the ``Action`` of a planned change and how each action is shown.

``Action`` values are the plan document's strings; ``ACTION_LOOK`` is the one table of each
action's symbol, colours, headline, legend and progress verbs, used by every renderer.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    READ = "read"
    NOOP = "no-op"

    @property
    def json_actions(self) -> list[str]:
        """The plan document's ``actions`` (Terraform's: a replace is delete then create)."""
        if self is Action.REPLACE:
            return [Action.DELETE.value, Action.CREATE.value]
        return [self.value]

    @classmethod
    def from_json_actions(cls, actions: Sequence[str]) -> Action:
        for a in cls:
            if a.json_actions == list(actions):
                return a
        raise ValueError(f"unknown actions {list(actions)!r}")

    @property
    def look(self) -> ActionLook:
        """How this action is shown everywhere (``ACTION_LOOK``)."""
        return ACTION_LOOK[self]

    @property
    def symbol(self) -> str:
        return ACTION_LOOK[self].symbol


@dataclass(frozen=True)
class ActionLook:
    """How one action is shown: ``symbol`` (``+``, ``-/+`` …; none for a no-op), ``style``
    (the terminal colour), ``headline`` ("will be created") and ``legend`` (the symbol legend's
    words), the progress verbs ``ing``/``noun`` ("Creating", "Creation"), and in graphs the
    ``colour`` name, Mermaid/DOT ``graph_class``, ``fill`` and ``stroke``."""

    symbol: str
    style: str
    headline: str
    legend: str
    ing: str
    noun: str
    colour: str
    graph_class: str
    fill: str
    stroke: str

    @property
    def legend_short(self) -> str:
        """The legend without its parenthesised note ("destroy and then create replacement")."""
        return self.legend.split(" (")[0]


# Graph colours: GitHub Primer, dark text on light fill.
ACTION_LOOK: Mapping[Action, ActionLook] = MappingProxyType(
    {
        Action.CREATE: ActionLook(
            "+", "green", "will be created", "create", "Creating", "Creation",
            "green", "create", "#dafbe1", "#1a7f37",
        ),
        Action.UPDATE: ActionLook(
            "~", "yellow", "will be updated in-place", "update in-place", "Modifying",
            "Modifications", "amber", "update", "#fff8c5", "#9a6700",
        ),
        Action.REPLACE: ActionLook(
            "-/+", "red", "must be replaced",
            "destroy and then create replacement (run again into a new version)",
            "Replacing", "Replacement", "orange", "replace", "#fff1e5", "#bc4c00",
        ),
        Action.DELETE: ActionLook(
            "-", "red", "will be destroyed", "destroy", "Destroying", "Destruction",
            "red", "delete", "#ffebe9", "#cf222e",
        ),
        Action.READ: ActionLook(
            "<=", "cyan", "will be read", "read (external dependency)", "Applying", "Apply",
            "blue", "read", "#ddf4ff", "#0969da",
        ),
        Action.NOOP: ActionLook(
            "", "dim", "is unchanged", "unchanged", "Applying", "Apply",
            "grey", "noop", "#f6f8fa", "#6e7781",
        ),
    }
)  # fmt: skip
SHOWN_ACTIONS = tuple(a for a in Action if a is not Action.NOOP)  # in legend order
