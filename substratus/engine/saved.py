"""Saved plans are re-derived, never trusted (DESIGN §5, §12).

``apply PLANFILE`` executes only what the configuration and the state the plan was made from
produce: it plans again — with the plan's options (mode, ``--target``, ``--replace``, refresh) and
against the same state serial (``plan.staleness``) — and runs *that* plan, after checking that
the file says the same thing. ``differences(saved, derived)`` lists, one line each, every
resource whose actions, specs, digests, inputs or lifecycle differ between the file and the plan
made again, naming the resource and the field; any difference refuses the apply. So an edited
file (an injected command, an action turned into ``delete``, a ``mode`` turned into
``destroy``) is refused, and a file that was not edited runs exactly as reviewed. The options
themselves are what the file says; ``apply --expect-sha256`` guards the whole file on top.
Pure; no I/O.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from substratus.engine.plan import Action, Plan, ResourceChange
from substratus.engine.sensitive import is_marker

# Fields of a change that decide what apply does (reasons and messages are for humans).
COMPARED = (
    "kind",
    "namespace",
    "name",
    "action",
    "record_only",
    "before",
    "after",
    "digest_before",
    "digest_after",
    "depends_on",
    "inputs",
    "lifecycle",
    "replace_paths",
)
OPTIONS = ("mode", "targets", "replace", "refresh", "workspace", "config_digest")


def _show(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _leaves(a: Any, b: Any, path: str) -> list[tuple[str, Any, Any]]:
    """(dotted path, value in a, value in b) where two JSON values differ, deepest first. Two
    sensitive markers are not compared: their fingerprints depend on the salt (and format) of
    the moment, while ``digest_after`` — keyed by the state's salt — tells a changed secret
    (before the state has a salt nothing in a plan depends on one: ``engine.digest``)."""
    if is_marker(a) and is_marker(b):
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _leaves(a.get(k, _ABSENT), b.get(k, _ABSENT), f"{path}.{k}")
        return out
    return [] if a == b else [(path, a, b)]


_ABSENT = "(absent)"


def _change_differences(saved: ResourceChange, derived: ResourceChange) -> list[str]:
    out = []
    for name in COMPARED:
        mine, theirs = getattr(saved, name), getattr(derived, name)
        if mine == theirs:
            continue
        field = "actions" if name == "action" else name
        for path, a, b in (
            _leaves(mine, theirs, field) if name in ("before", "after") else [(field, mine, theirs)]
        ):
            out.append(
                f"{saved.address}: {path} is {_show(a)} in the plan file, but "
                f"{_show(b)} when planned again"
            )
    if saved.action is Action.READ and saved.outputs != derived.outputs:
        out.append(f"{saved.address}: the outputs read differ from what is there now")
    return out


def differences(saved: Plan, derived: Plan) -> list[str]:
    """Where ``saved`` (a plan file) says something else than ``derived`` (the plan its
    configuration and state produce now); empty when they agree."""
    out = [
        f"{name} is {_show(getattr(saved, name))} in the plan file, but "
        f"{_show(getattr(derived, name))} when planned again"
        for name in OPTIONS
        if getattr(saved, name) != getattr(derived, name)
    ]
    mine = {c.address: c for c in saved.resource_changes}
    theirs = {c.address: c for c in derived.resource_changes}
    for address in sorted(mine.keys() | theirs.keys()):
        if address not in theirs:
            out.append(f"{address}: in the plan file, but not in the plan made again")
        elif address not in mine:
            action = theirs[address].action.value
            out.append(f"{address}: planned again as {action}, but missing from the plan file")
        else:
            out.extend(_change_differences(mine[address], theirs[address]))
    return out
