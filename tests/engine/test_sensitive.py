"""Sensitive fingerprints (``engine.sensitive``): salted, slow, never reversible from a plan; the
unsalted ones earlier states hold are recognised and rewritten without running anything."""

from __future__ import annotations

import json
import time
from pathlib import Path

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
    state, token = h.backend.read()
    assert state is not None
    params = state.resources["dataset.d"].spec["loader"]["params"]
    params["pin"] = {"$sensitive": legacy_fingerprint("4821")}  # as written before salts
    state.salt = None
    h.backend.write(state, token, [])

    plan = h.plan()
    assert [(c.address, c.action, c.record_only) for c in plan.changes()] == [
        ("dataset.d", Action.UPDATE, True)
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
