"""What makes a state's records usable: ``record_problems`` lists why a ``StateFile`` (one a user
hands to ``state push``, with or without ``--force``) would mislead a plan.

A record keyed by something that is not the address of the resource it describes is never
matched with the configuration: the plan would create that resource again and delete the
"extra" record, that is the real resource. So every key must be ``[namespace/]kind.name`` of its
own record, written the way substratus writes it (the namespace part only when it is not
``default_namespace``), each resource recorded once, and every dependency an address. The
pydantic model (``engine.statefile``) already checks the types and the known fields. No I/O.
"""

from __future__ import annotations

from substratus.engine.address import KIND_ALIASES, Address, name_problem
from substratus.engine.statefile import ResourceRecord, StateFile


def record_problems(state: StateFile, default_namespace: str) -> list[str]:
    """Why ``state`` cannot be stored, one line each (empty: it can)."""
    problems: list[str] = []
    if state.serial < 0:
        problems.append(f"the serial {state.serial} is negative")
    if not state.lineage.strip():
        problems.append("the lineage is empty")
    seen: dict[tuple[str, str, str], str] = {}
    for key, rec in sorted(state.resources.items()):
        problems.extend(_key_problems(key, rec, default_namespace))
        kind = KIND_ALIASES.get(rec.kind, rec.kind)
        same = seen.setdefault((kind, rec.namespace, rec.name), key)
        if same != key:
            problems.append(f"{key!r} and {same!r} record the same resource")
        deps = [*rec.dependencies, *rec.dependency_digests]
        deps += rec.pending.dependencies if rec.pending is not None else []
        for dep in dict.fromkeys(deps):
            try:
                Address.parse(dep)
            except ValueError:
                problems.append(f"{key!r} depends on {dep!r}, which is not a resource address")
    return problems


def _key_problems(key: str, rec: ResourceRecord, default_namespace: str) -> list[str]:
    try:
        Address.parse(key)
    except ValueError as exc:
        return [str(exc)]
    out = []
    for what, problem in (
        ("name", name_problem(rec.name)),
        ("namespace", name_problem(rec.namespace, 63)),
    ):
        if problem:
            out.append(f"the record {key!r} has an invalid {what}: {problem}")
    ns = rec.namespace if rec.namespace != default_namespace else None
    kind = KIND_ALIASES.get(rec.kind, rec.kind)  # "Model" as written in a document: model
    expected = str(Address(kind, rec.name, ns))
    if key != expected:
        out.append(
            f"the record {key!r} describes {rec.kind} {rec.name!r} in namespace "
            f"{rec.namespace!r}, whose address is {expected!r}"
        )
    return out
