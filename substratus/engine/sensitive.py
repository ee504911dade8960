"""Sensitive params (DESIGN §5): never printed, never stored, only a salted fingerprint.

A document lists the params whose values are secret: ``sensitive: [spec.loader.params.token]``.
``mask`` takes each such value out of the canonical spec when the configuration is loaded and
puts a marker there, ``{"$sensitive": PENDING}``; ``seal`` gives the marker its fingerprint once
the state is known, ``{"$sensitive": "scrypt:…"}``. Plans and the state only ever see the marker,
so a changed secret still shows as a change, as ``(sensitive)``. ``reveal`` puts the real values
back into the spec handed to a runtime at apply time; they come from the configuration loaded
for that apply, never from a plan file or the state.

Fingerprints cannot be reversed by guessing: ``fingerprint(value, salt)`` is scrypt (``COST``:
n=2**14, r=8, p=1 — about 16 MiB and 40–90 ms per value; cached per salt and value within a
process) over the value's canonical JSON, with the state's own random ``salt``
(``StateFile.salt``: made by the first apply that records a secret, kept from then on, never in
a plan). So the plan posted on a pull request gives nothing to guess against, and even with the
state in hand every guess costs a scrypt. Until the state has a salt, a plan shows ``PENDING``
and the apply seals the marker as it records it.

States written before hold ``sha256:…`` markers (``legacy_fingerprint``, unsalted): ``matches``
still compares those the old way, so an unchanged secret neither shows as changed nor runs
anything; the plan rewrites the record in the salted form (a record-only update).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

from substratus.engine.kinds import PARAM_SECTIONS

MARK = "$sensitive"
SCHEME = "scrypt:"
LEGACY = "sha256:"
PENDING = "scrypt:pending"  # no salt yet: the apply seals it with the state's new salt
COST = {"n": 2**14, "r": 8, "p": 1}  # hashlib.scrypt parameters (memory = 128 * n * r bytes)


def is_marker(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and MARK in value


def new_salt() -> str:
    """A fresh random salt for a state (128 bits, hex)."""
    return secrets.token_hex(16)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@functools.lru_cache(maxsize=4096)
def _scrypt(salt: str, data: str) -> str:
    derived = hashlib.scrypt(
        data.encode(),
        salt=b"substratus-sensitive\0" + salt.encode(),
        dklen=32,
        maxmem=64 * 1024 * 1024,
        **COST,
    )
    return derived.hex()


def fingerprint(value: Any, salt: str | None) -> str:
    """The marker text of ``value`` under the state's ``salt`` (``PENDING`` without one)."""
    if salt is None:
        return PENDING
    return SCHEME + _scrypt(salt, _canonical(value))


def legacy_fingerprint(value: Any) -> str:
    """The unsalted fingerprint states written before salts hold (and format 1 digests use)."""
    data = _canonical(value).encode()
    return LEGACY + hashlib.sha256(b"substratus-sensitive\0" + data).hexdigest()


def matches(text: Any, value: Any, salt: str | None) -> bool:
    """Whether the marker text ``text`` stands for ``value`` (``PENDING`` stands for any)."""
    if not isinstance(text, str):
        return False
    if text == PENDING:
        return True
    if text.startswith(LEGACY):
        return text == legacy_fingerprint(value)
    return salt is not None and text == fingerprint(value, salt)


def split_path(path: str) -> tuple[str, ...] | None:
    """``spec.loader.params.token`` -> ("loader", "params", "token") if it names a param."""
    parts = tuple(path.split("."))
    if len(parts) < 3 or parts[0] != "spec":
        return None
    inner = parts[1:]
    for parent in PARAM_SECTIONS:
        if inner[: len(parent)] == parent and len(inner) == len(parent) + 1:
            return inner
    return None


def _parent(spec: Any, parts: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = spec
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def mask(spec: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """Take the values at ``paths`` out of ``spec`` (in place, leaving ``PENDING`` markers);
    returns path -> real value. Paths must be valid (``split_path``) and set."""
    taken: dict[str, Any] = {}
    for path in paths:
        parts = split_path(path)
        assert parts is not None
        node: Any = spec
        for part in parts[:-1]:
            node = node[part]
        taken[path] = node[parts[-1]]
        node[parts[-1]] = {MARK: PENDING}
    return taken


def seal(
    spec: dict[str, Any], values: Mapping[str, Any] | None, salt: str | None
) -> dict[str, Any]:
    """``spec`` (a copy when anything changes) with the marker of each of ``values`` that
    stands for its value (``matches``) fingerprinted under ``salt``. A marker that stands for
    another value (kept by ``ignoreChanges``) is left as it is."""
    out = spec
    for path, value in (values or {}).items():
        parts = split_path(path)
        node = _parent(out, parts) if parts else None
        if parts is None or node is None or not is_marker(node.get(parts[-1])):
            continue
        text = node[parts[-1]][MARK]
        new = fingerprint(value, salt)
        if text != new and matches(text, value, salt):
            if out is spec:
                out = copy.deepcopy(spec)
                node = _parent(out, parts)
                assert node is not None
            node[parts[-1]] = {MARK: new}
    return out


def _markers(
    spec: dict[str, Any], values: Mapping[str, Any]
) -> Iterator[tuple[tuple[str, ...], dict[str, Any], Any, Any]]:
    """(path parts, parent, configured value, marker text) of each of ``values`` marked in
    ``spec``."""
    for path, value in values.items():
        parts = split_path(path)
        node = _parent(spec, parts) if parts else None
        if parts and node is not None and is_marker(node.get(parts[-1])):
            yield parts, node, value, node[parts[-1]][MARK]


def unmask(
    spec: dict[str, Any], values: Mapping[str, Any] | None, salt: str | None
) -> dict[str, Any]:
    """``spec`` with each marker that stands for its configured value replaced by that value
    (what a digest is computed over; never stored)."""
    if not values:
        return spec
    out = copy.deepcopy(spec)
    for parts, node, value, text in list(_markers(out, values)):
        if matches(text, value, salt):
            node[parts[-1]] = value
    return out


def align(
    before: dict[str, Any],
    after: Mapping[str, Any],
    values: Mapping[str, Any] | None,
    salt: str | None,
) -> dict[str, Any]:
    """``before`` (a recorded spec) with each marker that stands for the configured value
    written as ``after`` writes it: what to diff, so a fingerprint recorded in another form (or
    before the state had a salt) is not taken for a changed secret."""
    if not values:
        return before
    out = copy.deepcopy(before)
    for parts, node, value, text in list(_markers(out, values)):
        parent = _parent(after, parts)
        theirs = parent.get(parts[-1]) if parent is not None else None
        if is_marker(theirs) and matches(text, value, salt):
            node[parts[-1]] = copy.deepcopy(theirs)
    return out


def _param_paths(spec: Mapping[str, Any]) -> Iterator[tuple[str, ...]]:
    """The path of every param in ``spec``'s param sections (``kinds.PARAM_SECTIONS``)."""
    for section in PARAM_SECTIONS:
        node: Any = spec
        for part in section:
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping):
            yield from ((*section, key) for key in node)


def as_marked(
    spec: dict[str, Any],
    values: Mapping[str, Any] | None,
    recorded: Mapping[str, Any],
    salt: str | None,
) -> dict[str, Any]:
    """``spec`` (sealed) with its params marked as the ``recorded`` spec marks them: a param the
    record holds in plain gets its configured value back, a param the record holds as a marker
    that stands for the configured value gets that marker's form. The digest of the result is
    what the record's would be if only the ``sensitive:`` marking changed (``engine.digest``)."""
    out = copy.deepcopy(spec)
    marked = {split_path(p): v for p, v in (values or {}).items()}
    for parts in list(_param_paths(out)):
        node, theirs = _parent(out, parts), _parent(recorded, parts)
        if node is None or theirs is None or parts[-1] not in theirs:
            continue
        ours, was = node[parts[-1]], theirs[parts[-1]]
        if parts in marked and is_marker(ours) and not is_marker(was):
            node[parts[-1]] = copy.deepcopy(marked[parts])
        elif parts not in marked and is_marker(was) and matches(was[MARK], ours, salt):
            node[parts[-1]] = {MARK: fingerprint(ours, salt)}
    return out


def marking(spec: Mapping[str, Any]) -> frozenset[tuple[str, ...]]:
    """The param paths ``spec`` holds as markers."""
    out = set()
    for parts in _param_paths(spec):
        node = _parent(spec, parts)
        if node is not None and is_marker(node.get(parts[-1])):
            out.add(parts)
    return frozenset(out)


def legacy_masked(spec: dict[str, Any], values: Mapping[str, Any] | None) -> dict[str, Any]:
    """``spec`` with the markers of ``values`` in the unsalted form (format 1 digests)."""
    if not values:
        return spec
    out = copy.deepcopy(spec)
    for parts, node, value, text in list(_markers(out, values)):
        if matches(text, value, None):
            node[parts[-1]] = {MARK: legacy_fingerprint(value)}
    return out


def reveal(spec: Mapping[str, Any], values: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A copy of ``spec`` with the real values of its sensitive params."""
    if not values:
        return spec
    out = copy.deepcopy(dict(spec))
    for path, value in values.items():
        parts = split_path(path)
        if parts is None:
            continue
        node = _parent(out, parts)
        if node is not None and is_marker(node.get(parts[-1])):
            node[parts[-1]] = value
    return out
