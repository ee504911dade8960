"""Sensitive fingerprints (``engine.sensitive``): salted, slow, never reversible from a plan; the
unsalted ones earlier states hold are recognised and rewritten without running anything."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from substratus.engine.config import load_config
from substratus.engine.digest import canonical_json, plain_digests
from substratus.engine.graph import build_graph, topological
from substratus.engine.plan import Action
from substratus.engine.plan_document import plan_text
from substratus.engine.sensitive import (
    PENDING,
    fingerprint,
    legacy_fingerprint,
    matches,
    new_salt,
)
from tests.support.engine import Harness

CONFIG = """\
kind: Dataset
name: d
sensitive: [spec.loader.params.pin]
spec:
  container: {image: x, command: [run]}
  loader: {params: {pin: "PIN"}}
---
kind: Model
name: m
spec:
  container: {image: x, command: [run]}
  trainer: {dataset: d, params: {}}
"""


def config(pin: str) -> str:
    return CONFIG.replace("PIN", pin)


def marker(h: Harness) -> str:
    spec = h.state().resources["dataset.d"].spec
    return str(spec["loader"]["params"]["pin"]["$sensitive"])


def written_before_salts(h: Harness) -> None:
    """Rewrite ``h``'s state as substratus wrote it before salts: no salt, the pin's unsalted
    fingerprint, and format 2 digests (over the plain value, ``digest.plain_digests``)."""
    state, token = h.backend.read()
    assert state is not None
    params = state.resources["dataset.d"].spec["loader"]["params"]
    params["pin"] = {"$sensitive": legacy_fingerprint("4821")}
    state.salt = None
    cfg = load_config([str(h.root)])
    order = topological(build_graph(cfg.resources))
    plain = plain_digests(order, cfg.resources, {}, state.resources, None)
    digests = {str(a): d for a, d in plain.items()}
    for address, rec in state.resources.items():
        rec.digest, rec.digest_format = digests[address], 2
        rec.dependency_digests = {d: digests[d] for d in rec.dependency_digests}
    h.backend.write(state, token, [])


def test_fingerprints_are_salted_slow_and_compared_by_form() -> None:
    a, b = new_salt(), new_salt()
    assert a != b and len(a) == 32
    started = time.perf_counter()
    one = fingerprint("1234", a)
    cost = time.perf_counter() - started
    assert one.startswith("scrypt:") and one != fingerprint("1234", b)
    assert one == fingerprint("1234", a) != fingerprint("1235", a)
    assert cost < 2.0  # a plan stays quick; a brute force does not (measured: 40-90 ms each)
    assert fingerprint("1234", None) == PENDING
    assert matches(one, "1234", a) and not matches(one, "1234", b) and not matches(one, "9", a)
    assert matches(legacy_fingerprint("1234"), "1234", None)
    assert not matches(legacy_fingerprint("1234"), "1235", a)
    assert matches(PENDING, "anything", None)


def test_the_state_keeps_its_salt_and_the_plan_never_shows_it(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    first = h.plan(config("4821"))
    text = plan_text(first)
    assert "4821" not in text and PENDING in text  # no salt yet: sealed by the apply
    assert h.apply(first).ok
    salt = h.state().salt
    assert salt is not None and marker(h) == fingerprint("4821", salt)
    again = h.plan()
    assert not again.has_changes
    shown = plan_text(again)
    assert salt not in shown and "4821" not in shown and marker(h) in shown

    changed = h.plan(config("4822"))
    d = next(c for c in changed.resource_changes if c.address == "dataset.d")
    assert d.action is Action.REPLACE
    assert [r.path for r in d.reasons] == ["spec.loader.params.pin"]
    start = len(h.runtime.calls)
    assert h.apply(changed).ok
    assert sorted(a for _, a in h.runtime.calls[start:]) == ["dataset.d", "model.m"]
    assert h.state().salt == salt and marker(h) == fingerprint("4822", salt)


def test_an_unsalted_fingerprint_is_rewritten_without_running_anything(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.apply(h.plan(config("4821"))).ok
    written_before_salts(h)

    plan = h.plan()
    assert [(c.address, c.action, c.record_only) for c in plan.changes()] == [
        ("dataset.d", Action.UPDATE, True),
        ("model.m", Action.UPDATE, True),  # its input's digest is now keyed: recorded anew
    ]
    assert legacy_fingerprint("4821") not in json.dumps(plan.changes()[0].after)
    start = len(h.runtime.calls)
    assert h.apply(plan).ok
    assert h.runtime.calls[start:] == []  # counted at the runtime: nothing ran
    salt = h.state().salt
    assert salt is not None and marker(h) == fingerprint("4821", salt)
    assert not h.plan().has_changes

    # a changed secret under an unsalted fingerprint is a change, and names the field
    state, token = h.backend.read()
    assert state is not None
    state.resources["dataset.d"].spec["loader"]["params"]["pin"] = {
        "$sensitive": legacy_fingerprint("4821")
    }
    h.backend.write(state, token, [])
    assert not h.plan().runs()  # same value: record only
    d = next(c for c in h.plan(config("0000")).changes() if c.address == "dataset.d")
    assert d.action is Action.REPLACE and [r.path for r in d.reasons] == ["spec.loader.params.pin"]


def _published(text: str) -> dict[str, object]:
    """A plan's JSON without the moment it was made."""
    doc = json.loads(text)
    doc.pop("created_at")
    return dict(doc)


def _guess(change_after: dict[str, object], digest: str, candidates: list[str]) -> str | None:
    """The attack on a published digest: rebuild the digest document with each candidate in
    place of the marker and hash it as a digest over plain values would be hashed."""
    for pin in candidates:
        spec = json.loads(json.dumps(change_after))
        spec["loader"]["params"]["pin"] = pin
        doc = {"kind": "dataset", "spec": spec, "deps": []}
        if hashlib.sha256(canonical_json(doc).encode()).hexdigest() == digest:
            return pin
    return None


def test_nothing_a_plan_publishes_gives_a_secret_away(tmp_path: Path) -> None:
    """Digests and the configuration's digest are published in every plan. Before the state has
    a salt they do not depend on a secret at all; after, they depend on it only through the
    salted fingerprint: hashing guesses does not find it — though it would find it in a digest
    over the plain value (format 2: the attack is real)."""
    h = Harness(tmp_path)
    assert _published(plan_text(h.plan(config("4821")))) == _published(
        plan_text(h.plan(config("4822")))
    )
    assert h.apply(h.plan(config("4821"))).ok

    plan = h.plan(config("4821"))
    d = next(c for c in plan.resource_changes if c.address == "dataset.d")
    pins = [f"{n:04d}" for n in range(4800, 4900)]
    assert d.digest_after and d.after is not None
    assert _guess(d.after, d.digest_after, pins) is None
    cfg = load_config([str(h.root)])
    state = h.state()
    order = topological(build_graph(cfg.resources))
    plain = plain_digests(order, cfg.resources, {}, state.resources, state.salt)
    dataset = next(a for a in order if str(a) == "dataset.d")
    assert _guess(d.after, plain[dataset], pins) == "4821"
    changed = h.plan(config("4822"))
    assert (
        _published(plan_text(changed))["config_digest"]
        == _published(plan_text(plan))["config_digest"]
    )  # over the files with the values taken out: the change shows in the digests instead
    assert {c.address for c in changed.changes()} == {"dataset.d", "model.m"}
