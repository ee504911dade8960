"""Human renderings of a ``Plan`` and of apply results, in Terraform's style (DESIGN §5).

``render_plan(plan, color=False)`` returns the text ``substratus plan`` prints: drift first
("Objects have changed outside of substratus"), the symbol legend, one block per change with its
reasons and field diffs (``# forces replacement`` on the fields that force a replacement), then
``Plan: A to add, C to change, D to destroy.`` (``summary_line``: a replacement counted in both,
and said so) and, as Terraform prints more sections after that
line, the estimate of what the apply will consume (``engine.estimate_text``). It is deterministic
(golden-tested) and does no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from substratus.engine.estimate_text import text_section
from substratus.engine.kinds import RECORD_ONLY_FIELDS, versioned
from substratus.engine.plan import SHOWN_ACTIONS, Action, Mode, Plan, ReasonCode, ResourceChange
from substratus.engine.render_diagnostic import Painter, render_diagnostic
from substratus.engine.sensitive import MARK, is_marker


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a spec as ``dotted.path -> value`` (lists and empty maps are leaves)."""
    if not _branches(value):
        return {prefix: value}
    out: dict[str, Any] = {}
    _flatten_into(out, value, prefix)
    return out


def _branches(value: Any) -> bool:
    """Whether ``flatten`` looks inside ``value``: a non-empty mapping, not a sensitive marker."""
    if type(value) is dict:
        return bool(value) and not (len(value) == 1 and MARK in value)
    return isinstance(value, dict) and bool(value) and not is_marker(value)


def _flatten_into(out: dict[str, Any], value: dict[Any, Any], prefix: str) -> None:
    for k, v in value.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        leaf = not v if type(v) is dict else not isinstance(v, dict)  # most, without a call
        if leaf:
            out[path] = v
        elif _branches(v):
            _flatten_into(out, v, path)
        else:
            out[path] = v


# json.dumps(value, ensure_ascii=False, sort_keys=True), without a new encoder per call, and
# for the plain scalars that are most of a spec without an encoder at all.
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
_encode_string: Callable[[str], str] = (
    getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring
)
_CONSTANTS = {True: "true", False: "false", None: "null"}


def fmt(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _encode_string(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool or value is None:
        return _CONSTANTS[value]
    if kind is list and all(type(x) is str for x in value):
        return "[" + ", ".join(map(_encode_string, value)) + "]"
    if is_marker(value):
        return "(sensitive)"
    return _ENCODER.encode(value)


def _field_lines(change: ResourceChange, paint: Painter) -> list[str]:
    """The changed fields of ``change``; of a record-only update, the changed
    ``RECORD_ONLY_FIELDS`` alone (the rest is the same content, recorded anew)."""
    lines: list[str] = []
    before = flatten(change.before or {}) if change.before else {}
    after = flatten(change.after or {}) if change.after else {}
    if change.record_only:
        before = {k: v for k, v in before.items() if k in RECORD_ONLY_FIELDS}
        after = {k: v for k, v in after.items() if k in RECORD_ONLY_FIELDS}
    forced = {p.removeprefix("spec.") for p in change.replace_paths}
    if change.action is Action.CREATE and not change.before:
        shown = {k: v for k, v in after.items() if v != {}}
        width = max((len(k) for k in shown), default=0)
        plus = paint("+", "green")
        return [f"      {plus} {k.ljust(width)} = {fmt(v)}" for k, v in shown.items()]
    if change.action in (Action.DELETE, Action.READ):
        return []
    keys = sorted(set(before) | set(after), key=lambda k: (k not in after, k))
    changed = [k for k in keys if before.get(k, _MISSING) != after.get(k, _MISSING)]
    width = max((len(k) for k in changed), default=0)
    for k in changed:
        note = (
            "  # forces replacement"
            if any(k == f or k.startswith(f + ".") or f.startswith(k + ".") for f in forced)
            else ""
        )
        if k not in before:
            lines.append(f"      {paint('+', 'green')} {k.ljust(width)} = {fmt(after[k])}{note}")
        elif k not in after:
            lines.append(f"      {paint('-', 'red')} {k.ljust(width)} = {fmt(before[k])}{note}")
        else:
            lines.append(
                f"      {paint('~', 'yellow')} {k.ljust(width)} = "
                f"{fmt(before[k])} -> {fmt(after[k])}{note}"
            )
    unchanged = len([k for k in keys if k not in changed])
    if unchanged and lines:
        lines.append(paint(f"        # ({unchanged} unchanged fields hidden)", "dim"))
    return lines


_MISSING = object()
_NO_BECAUSE = (ReasonCode.ADOPT, ReasonCode.EXTERNAL, ReasonCode.RECORD, ReasonCode.REQUESTED)


def render_change(change: ResourceChange, paint: Painter) -> list[str]:
    look = change.action.look
    head = look.headline
    if change.action is Action.CREATE and change.before:
        head = "will be created again"
    if change.record_only:
        head = "will be updated in-place (record only: nothing runs)"
    lines = [paint(f"  # {change.address} {head}", "bold")]
    changed = [r.path for r in change.reasons if r.path and r.code.is_field]
    if changed:
        lines.append(f"  # (because {', '.join(changed)} changed)")
    for r in change.reasons:
        if r.code is ReasonCode.NEW or (r.path and r.code.is_field):
            continue
        because = "" if r.code in _NO_BECAUSE else "because "
        lines.append(f"  # ({because}{r.message})")
    kind_label = change.kind
    lines.append(f'{paint(look.symbol.rjust(3), look.style)} {kind_label} "{change.name}" {{')
    fields = _field_lines(change, paint)
    if not fields and change.action in (Action.UPDATE, Action.REPLACE) and not change.record_only:
        inputs = any(r.code is ReasonCode.DEPENDENCY_CHANGED for r in change.reasons)
        note = "its inputs changed" if inputs else "it runs again into a new version"
        if change.action is Action.UPDATE:
            note = "its inputs changed" if inputs else "it is rolled out again"
        fields = [paint(f"        # (no field changes; {note})", "dim")]
    elif not fields and change.action is Action.CREATE:
        fields = [paint("        # (same definition as recorded; it is created again)", "dim")]
    if change.action is Action.READ and change.outputs:
        for k, v in sorted(change.outputs.items()):
            fields.append(f"        {k} = {fmt(v)}")
    lines.extend(fields)
    lines.append("    }")
    return lines


def summary_line(plan: Plan) -> str:
    """``Plan: A to add, C to change, D to destroy.``, counted as Terraform counts: a replacement
    is one add and one destroy, and ``replacement_note`` says so. Numbers have thousands
    separators (as everywhere)."""
    s = plan.summary()
    line = f"Plan: {s['add']:,} to add, {s['change']:,} to change, {s['destroy']:,} to destroy."
    return line + replacement_note(plan)


def replacement_note(plan: Plan) -> str:
    """When ``plan`` replaces resources, a sentence (with a leading space) saying they are
    counted in both add and destroy, and whether the replaced resources keep their previous
    version (the versioned kinds, datasets and models, keep it for a roll-back): " Replacements:
    2, counted in both add and destroy; their previous versions are kept." "" without any."""
    replaced = [c for c in plan.resource_changes if c.action is Action.REPLACE]
    if not replaced:
        return ""
    n, kept = len(replaced), sum(1 for c in replaced if versioned(c.kind))
    note = f" Replacements: {n:,}, counted in both add and destroy"
    if kept == n:
        note += "; its previous version is kept" if n == 1 else "; their previous versions are kept"
    elif kept:
        which = "keeps its previous version" if kept == 1 else "keep their previous versions"
        note += f"; {kept:,} {which}"
    return f"{note}."


def _drift_lines(plan: Plan, paint: Painter) -> list[str]:
    """The drift ("Objects have changed outside of substratus") and what the plan does."""
    if not plan.drift:
        return []
    out: list[str] = []
    out.append(paint("Note: Objects have changed outside of substratus", "bold"))
    out.append("")
    out.append(
        "substratus detected the following changes made outside of substratus since "
        'the last "substratus apply":'
    )
    out.append("")
    for d in plan.drift:
        out.append(f"  # {d.address} {d.status.verb}: {d.message}")
    out.append("")
    if plan.mode is Mode.REFRESH_ONLY:
        out.append(
            "This is a refresh-only plan, so substratus will not take any actions to "
            "undo these. If you were expecting these changes then you can apply this "
            "plan to record the updated values in the state without changing any "
            "resources."
        )
        out.append("")
    else:
        out.append(
            "Unless you have made equivalent changes to your configuration, the plan "
            "below repairs them."
        )
        out.append("")
    return out


def render_plan(plan: Plan, color: bool = False) -> str:
    paint = Painter(color)
    out: list[str] = []
    out += _drift_lines(plan, paint)
    for w in plan.warnings:
        out.append(render_diagnostic(w, paint))
    changes = [c for c in plan.resource_changes if c.action is not Action.NOOP]
    acting = [c for c in changes if c.action is not Action.READ]
    if plan.mode is Mode.REFRESH_ONLY:
        if not plan.drift:
            out.append("No changes. Your resources still match the configuration.")
        return "\n".join(out).rstrip() + "\n"
    if not acting:
        reads = [render_change(c, paint) for c in changes]
        for block in reads:
            out.extend(block)
            out.append("")
        if plan.mode is Mode.DESTROY:
            out.append("No changes. No objects need to be destroyed.")
        else:
            out.append("No changes. Your resources match the configuration.")
        return "\n".join(out).rstrip() + "\n"
    used = [a for a in SHOWN_ACTIONS if any(c.action is a for c in changes)]
    out.append("Resource actions are indicated with the following symbols:")
    for a in used:
        out.append(f"  {paint(a.look.symbol.rjust(3), a.look.style)} {a.look.legend}")
    out.append("")
    out.append("substratus will perform the following actions:")
    out.append("")
    for c in changes:
        out.extend(render_change(c, paint))
        out.append("")
    out.append(paint(summary_line(plan), "bold"))
    estimate = text_section(plan.estimate_json(), paint)
    if estimate:
        out += ["", *estimate]
    return "\n".join(out).rstrip() + "\n"
