"""Property-based tests of plan → apply → plan (DESIGN §4–§7) through the in-memory harness.

Every example builds a fresh ``Harness`` (fake runtime, memory backend) in its own temporary
directory, generates a random valid configuration (``tests.property.configs``) and checks:

1. convergence: plan → apply → plan is empty, from nothing and after each of 1–4 random edits;
2. state: after apply, the state holds exactly the configured resources, at the planned digests;
3. lineage: editing a Dataset's params replaces/updates exactly it and its transitive dependents;
4. order: the runtime is called in dependency order (deletes in reverse order);
5. destroy: a destroy plan empties the state and a normal plan then re-creates everything;
6. failure containment: a failing resource fails, its dependents are skipped, the rest is done,
   and the next plan/apply converges;
7. drift: a resource deleted outside substratus is re-created, alone, at the same digest;
8. formatting: the same configuration written differently plans no changes;
9. what runs is what the plan says (counted at the runtime, after every apply): exactly the
   plan's creates, replaces and in-place roll-outs — a ``lifecycle``, ``sensitive:`` or
   ``spec.retries`` edit runs nothing, ``--replace`` runs exactly what it names, into new versions;
10. position is not content: splitting the configuration into files, passing them in any
    order, renaming its directory or adding an unrelated resource whose build context has the
    same basename changes no digest;
11. shared stores: states sharing one artifact store never remove a version another records;
    after every apply, every version any state keeps is in the store.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import given, note
from hypothesis import strategies as st

from substratus.engine.address import Address
from substratus.engine.apply import ApplyResult
from substratus.engine.digest import rekeyed
from substratus.engine.kinds import version_key as store_key
from substratus.engine.plan import Action, Mode, Plan
from substratus.engine.plan_document import parse_plan, plan_text
from substratus.engine.sensitive import PENDING
from tests.property.configs import (
    DEFAULT_STYLE,
    Cfg,
    Style,
    configs,
    different_params,
    draw_edit,
    draw_metadata_edit,
    draw_resource,
    make_contexts,
    metadata_keys,
    render,
    styles,
    unprotected,
)
from tests.support.engine import Harness
from tests.support.fakes import FakeRuntime

IN_PLACE = {"modelserver", "notebook"}
RUNTIME_ACTION = {
    Action.CREATE: "create",
    Action.UPDATE: "update",
    Action.REPLACE: "replace",
    Action.DELETE: "delete",
}


@contextmanager
def harness(runtime: FakeRuntime | None = None) -> Iterator[Harness]:
    with tempfile.TemporaryDirectory(prefix="substratus-prop-") as tmp:
        root = Path(tmp) / "config"
        root.mkdir()
        make_contexts(root)
        yield Harness(root, runtime)


def plan(h: Harness, cfg: Cfg, style: Style = DEFAULT_STYLE, **options: Any) -> Plan:
    text = render(cfg, style)
    note(f"configuration:\n{text}")
    return h.plan(text, **options)


def by_address(p: Plan) -> dict[str, Any]:
    return {c.address: c for c in p.resource_changes}


def describe(p: Plan) -> str:
    return ", ".join(f"{c.address}:{c.action.value}" for c in p.resource_changes) or "(nothing)"


# -- checks -------------------------------------------------------------------------------------


def assert_empty(p: Plan, cfg: Cfg) -> None:
    """A plan with nothing to do: one no-op per configured resource, no drift."""
    assert not p.has_changes, f"expected no changes, got {describe(p)}"
    assert all(c.action is Action.NOOP for c in p.resource_changes), describe(p)
    assert sorted(by_address(p)) == sorted(cfg.addresses)
    assert p.summary() == {"add": 0, "change": 0, "destroy": 0, "replace": 0}
    assert p.drift == ()


def promised(h: Harness, p: Plan) -> dict[str, str]:
    """The digest each change of ``p`` promised: its ``digest_after``; for a plan made before the
    state had a salt (its sensitive markers ``PENDING``), computed again under the salt its apply
    made (``digest.rekeyed``) — which leaves the digest of a resource with no sensitive param
    upstream exactly as the plan said."""
    plain = {c.address: c.digest_after or "" for c in p.resource_changes}
    salt = h.state().salt
    if salt is None or PENDING not in plan_text(p):
        return plain
    keyed = rekeyed(p.resource_changes, h.secrets, salt)
    upstream = {c.address: set(c.depends_on) for c in p.resource_changes}
    secret = set(h.secrets)
    for address in keyed:  # address and everything upstream of it, by the plan's inputs
        closure, todo = set(), [address]
        while todo:
            a = todo.pop()
            if a not in closure:
                closure.add(a)
                todo.extend(upstream.get(a, ()))
        if plain[address] and not closure & secret:  # (a delete has no digest to promise)
            assert keyed[address] == plain[address], address
    return keyed


def assert_state(h: Harness, cfg: Cfg, applied: Plan) -> None:
    """The state holds exactly the configured resources, each at the digest the plan promised."""
    state = h.state()
    assert sorted(state.resources) == sorted(cfg.addresses)
    digests = promised(h, applied)
    deps = cfg.deps()
    for address, rec in state.resources.items():
        assert rec.digest == digests[address], address
        assert rec.status == "ready" and rec.pending is None, address
        assert set(rec.dependencies) == deps[address], address


def assert_order(
    calls: list[tuple[str, str]], p: Plan, cfg: Cfg, prior: Cfg | None, skipped: set[str]
) -> None:
    """The runtime saw each change that was not skipped once, in dependency order (from the
    model's graph, not the engine's)."""
    runs = [c for c in p.changes() if c.action is Action.DELETE or not c.record_only]
    expected = sorted(
        (RUNTIME_ACTION[c.action], c.address) for c in runs if c.address not in skipped
    )
    assert sorted(calls) == expected  # record-only updates call nothing
    position = {address: i for i, (_action, address) in enumerate(calls)}
    creates = {a for action, a in calls if action != "delete"}
    deletes = {a for action, a in calls if action == "delete"}
    deps = cfg.deps()
    for a in creates:
        for d in deps[a] & creates:
            assert position[d] < position[a], f"{a} was applied before its dependency {d}"
    prior_deps = prior.deps() if prior is not None else {}
    for a in deletes:
        for d in prior_deps.get(a, set()) & deletes:
            assert position[a] < position[d], f"{d} was deleted before its dependent {a}"


def apply(h: Harness, p: Plan, cfg: Cfg, prior: Cfg | None) -> ApplyResult:
    start = len(h.runtime.calls)
    result = h.apply(p)
    assert_order(h.runtime.calls[start:], p, cfg, prior, set(result.skipped))
    assert_versions_kept(h)
    return result


def assert_versions_kept(*hs: Harness) -> None:
    """Every version any state keeps (current, previous, one being made) is in the store."""
    for h in hs:
        state, _ = h.backend.read()
        for address, rec in (state.resources if state else {}).items():
            if rec.status != "ready":
                continue
            for version in rec.keep():
                k = store_key(rec.namespace, rec.kind, rec.name, version)
                assert k in h.runtime.store, f"{address}: its version {version} is gone"


def converge(
    h: Harness, cfg: Cfg, prior: Cfg | None, style: Style = DEFAULT_STYLE, saved: bool = False
) -> Plan:
    """plan → apply → plan: the apply succeeds, the state matches, the next plan is empty.
    ``saved``: apply the plan as read back from its JSON (``plan --out`` / ``apply FILE``)."""
    state, _ = h.backend.read()
    removed = (set(state.resources) if state else set()) - cfg.addresses
    p = plan(h, cfg, style)
    if saved:
        p = parse_plan(plan_text(p))
    result = apply(h, p, cfg, prior)
    assert result.ok, (result.failed, result.skipped)
    assert sorted(result.done) == sorted(c.address for c in p.changes())
    assert {c.address for c in p.changes() if c.action is Action.DELETE} == removed
    assert_state(h, cfg, p)
    assert_empty(h.plan(), cfg)
    return p


# -- properties ---------------------------------------------------------------------------------


@given(configs(max_size=8), st.data())
def test_converges_from_nothing_and_after_edits(cfg: Cfg, data: st.DataObject) -> None:
    """Properties 1, 2 and 4: every apply converges and leaves the promised state."""
    with harness() as h:
        saved = st.booleans()
        first = converge(h, cfg, None, saved=data.draw(saved, label="saved plan"))
        assert all(c.action is Action.CREATE for c in first.resource_changes)
        applied, n = cfg, data.draw(st.integers(1, 4), label="edits")
        for i in range(n):
            what, cfg = draw_edit(data.draw, cfg)
            note(f"edit: {what}")
            # Mostly apply after each edit; sometimes let edits pile up into one plan.
            if i == n - 1 or data.draw(st.integers(0, 3), label="apply now"):
                converge(h, cfg, applied, saved=data.draw(saved, label="saved plan"))
                applied = cfg


@given(configs(max_size=8, first="dataset"), st.data())
def test_dataset_change_ripples_to_exactly_its_dependents(cfg: Cfg, data: st.DataObject) -> None:
    """Property 3: a Dataset's new params change it and everything downstream, nothing else."""
    with harness() as h:
        converge(h, cfg, None)
        edited = cfg.copy()
        ds = data.draw(st.sampled_from(edited.of_kind("dataset")), label="dataset")
        ds.params = different_params(data.draw, ds.params)
        p = plan(h, edited)
        affected = {ds.address} | edited.dependents(ds.address)
        note(f"expected to change: {sorted(affected)}; plan: {describe(p)}")
        changes = by_address(p)
        assert sorted(changes) == sorted(edited.addresses)
        for address, c in changes.items():
            if address in affected:
                want = Action.UPDATE if c.kind in IN_PLACE else Action.REPLACE
                assert c.action is want, f"{address}: {c.action.value}, expected {want.value}"
                assert c.digest_after != c.digest_before, address
            else:
                assert c.action is Action.NOOP, f"{address}: {c.action.value}"
                assert c.digest_after == c.digest_before, address
        own = changes[ds.address]
        assert own.replace_paths and all(
            path.startswith("spec.loader.params") for path in own.replace_paths
        ), own.replace_paths
        for address in affected - {ds.address}:
            changed_deps = edited.deps()[address] & affected
            named = {r.address for r in changes[address].reasons if r.code == "dependency_changed"}
            assert named == changed_deps, (address, named, changed_deps)
        p2 = plan(h, edited)
        assert describe(p2) == describe(p)
        result = apply(h, p2, edited, cfg)
        assert result.ok
        assert_state(h, edited, p2)
        assert_empty(h.plan(), edited)


@given(configs(max_size=8), st.data())
def test_destroy_then_recreate(cfg: Cfg, data: st.DataObject) -> None:
    """Properties 5 and 4: destroy deletes everything in reverse dependency order."""
    with harness() as h:
        converge(h, cfg, None)
        if data.draw(st.booleans(), label="edit before destroy"):
            what, edited = draw_edit(data.draw, cfg)
            note(f"edit: {what}")
            converge(h, edited, cfg)
            cfg = edited
        if any(r.protected for r in cfg.resources):
            _what, lifted = unprotected(cfg)
            converge(h, lifted, cfg)
            cfg = lifted
        p = plan(h, cfg, mode=Mode.DESTROY)
        assert sorted(by_address(p)) == sorted(cfg.addresses)
        assert all(c.action is Action.DELETE for c in p.resource_changes), describe(p)
        assert p.summary()["destroy"] == len(cfg.addresses)
        result = apply(h, p, Cfg(), cfg)
        assert result.ok
        assert h.state().resources == {}
        again = h.plan()
        assert all(c.action is Action.CREATE for c in again.resource_changes), describe(again)
        assert sorted(by_address(again)) == sorted(cfg.addresses)
        converge(h, cfg, None)


@given(configs(max_size=8), st.data())
def test_failure_is_contained_and_recovers(cfg: Cfg, data: st.DataObject) -> None:
    """Property 6: the failed resource fails, its dependents are skipped, the rest is done;
    after the failure is gone (and maybe another edit), the next apply converges."""
    with harness() as h:
        prior: Cfg | None = None
        if data.draw(st.booleans(), label="fail during an edit"):
            converge(h, cfg, None)
            what, edited = draw_edit(data.draw, cfg)
            note(f"edit: {what}")
            prior, cfg = cfg, edited
        p = plan(h, cfg)
        changing = [c.address for c in p.changes() if c.action is not Action.DELETE]
        running = [c.address for c in p.runs()]
        if not running:  # e.g. removing a leaf: nothing runs that could fail
            return
        bad = data.draw(st.sampled_from(sorted(running)), label="failing address")
        h.runtime.fail.add(bad)
        before = h.state().resources.get(bad) if prior is not None else None
        result = apply(h, p, cfg, prior)
        skipped = cfg.dependents(bad) & set(changing)
        # A delete waits for the resources that used it to switch away; if one of them failed
        # or was skipped, the delete is skipped too (nothing is deleted while still in use).
        blocked = {bad} | skipped
        users: dict[str, set[str]] = {}
        for user, deps in (prior.deps() if prior is not None else {}).items():
            for dep in deps:
                users.setdefault(dep, set()).add(user)
        deleting = {c.address for c in p.changes() if c.action is Action.DELETE}
        grew = True
        while grew:
            more = {d for d in deleting - blocked if users.get(d, set()) & blocked}
            grew = bool(more)
            blocked |= more
            skipped |= more
        assert set(result.failed) == {bad}
        assert set(result.skipped) == skipped
        assert all("upstream" in why for why in result.skipped.values())
        assert sorted(result.done) == sorted({c.address for c in p.changes()} - {bad} - skipped)
        state = h.state().resources
        if before is None:  # a failed first run: a tainted record, no version
            assert state[bad].status == "tainted" and not state[bad].digest
        else:  # a failed run leaves the previous record (and version) in place
            assert state[bad].digest == before.digest and state[bad].pending is None
        for a in skipped:
            assert a not in state or state[a].digest != promised(h, p)[a]
        digests = promised(h, p)
        for a in set(cfg.addresses) - {bad} - skipped:
            assert state[a].digest == digests[a], a
        h.runtime.fail.clear()
        if data.draw(st.booleans(), label="edit before retrying"):
            what, edited = draw_edit(data.draw, cfg)
            note(f"edit after the failure: {what}")
            converge(h, edited, cfg)
            return
        retry = h.plan()
        assert {c.address for c in retry.changes()} == {bad} | skipped, describe(retry)
        result = apply(h, retry, cfg, prior)
        assert result.ok
        assert_state(h, cfg, retry)
        assert_empty(h.plan(), cfg)


@given(configs(max_size=8), st.data())
def test_drift_recreates_exactly_the_missing_resources(cfg: Cfg, data: st.DataObject) -> None:
    """Property 7: resources deleted outside substratus are re-created alone, at the same
    digests; their dependents are not touched."""
    with harness() as h:
        converge(h, cfg, None)
        gone = data.draw(
            st.sets(st.sampled_from(sorted(cfg.addresses)), min_size=1, max_size=3), label="gone"
        )
        digests = {a: r.digest for a, r in h.state().resources.items()}
        h.runtime.missing |= gone
        p = h.plan()
        note(f"plan: {describe(p)}")
        assert sorted((d.address, d.status) for d in p.drift) == [
            (a, "missing") for a in sorted(gone)
        ]
        for a, c in by_address(p).items():
            assert c.digest_after == c.digest_before == digests[a], a
            if a in gone:
                assert c.action is Action.CREATE, (a, c.action)
                assert [r.code for r in c.reasons] == ["drift"], (a, c.reasons)
            else:
                assert c.action is Action.NOOP, (a, c.action)
        result = apply(h, p, cfg, cfg)
        assert result.ok
        assert {a for _action, a in h.runtime.calls[-len(gone) :]} == gone
        assert {a: r.digest for a, r in h.state().resources.items()} == digests
        assert_empty(h.plan(), cfg)


@given(configs(max_size=8), styles, styles)
def test_formatting_does_not_matter(cfg: Cfg, written: Style, rewritten: Style) -> None:
    """Property 8: the same configuration written another way (document and key order, reference
    form, the Server alias, explicit defaults, flow style) plans no changes."""
    with harness() as h:
        converge(h, cfg, None, written)
        assert_empty(plan(h, cfg, rewritten), cfg)


@given(configs(max_size=8), st.data())
def test_metadata_edits_run_nothing(cfg: Cfg, data: st.DataObject) -> None:
    """Property 9: lifecycle, ``sensitive:`` and ``spec.retries`` edits rewrite records;
    nothing runs."""
    with harness() as h:
        converge(h, cfg, None)
        for _ in range(data.draw(st.integers(1, 3), label="edits")):
            kinds = ["lifecycle", "sensitive", "retries"]
            kind = data.draw(st.sampled_from(kinds), label="kind")
            if kind == "sensitive" and not any(metadata_keys(r) for r in cfg.resources):
                kind = "lifecycle"
            if kind == "retries" and not any(r.runs_job for r in cfg.resources):
                kind = "lifecycle"
            what, edited = draw_metadata_edit(data.draw, cfg.copy(), kind)
            note(f"edit: {what}")
            p = plan(h, edited)
            assert p.runs() == [], describe(p)
            assert all(c.record_only for c in p.changes()), describe(p)
            start = len(h.runtime.calls)
            converge(h, edited, cfg)
            assert h.runtime.calls[start:] == []  # counted at the runtime: nothing ran
            cfg = edited


@given(configs(max_size=8), st.data())
def test_replace_runs_again_exactly_what_it_names(cfg: Cfg, data: st.DataObject) -> None:
    """Property 9: ``--replace`` runs exactly the named resources again, into new versions."""
    with harness() as h:
        converge(h, cfg, None)
        named = data.draw(
            st.sets(st.sampled_from(sorted(cfg.addresses)), min_size=1, max_size=3), label="replace"
        )
        before = {a: r.current_version for a, r in h.state().resources.items()}
        p = plan(h, cfg, replace=[Address.parse(a) for a in sorted(named)])
        assert sorted(c.address for c in p.runs()) == sorted(named), describe(p)
        assert all(c.action is Action.REPLACE for c in p.changes())
        assert all([r.code for r in c.reasons] == ["requested"] for c in p.changes())
        start = len(h.runtime.calls)
        assert apply(h, p, cfg, cfg).ok
        assert sorted(a for _action, a in h.runtime.calls[start:]) == sorted(named)
        after = {a: r.current_version for a, r in h.state().resources.items()}
        assert {a for a in after if after[a] != before[a]} == named  # new versions, only there
        assert_empty(h.plan(), cfg)


@given(configs(max_size=8), st.data())
def test_position_is_not_content(cfg: Cfg, data: st.DataObject) -> None:
    """Property 10: files, their order, the directory's name and unrelated resources change no
    digest."""
    with harness() as h:
        converge(h, cfg, None)
        digests = {a: r.digest for a, r in h.state().resources.items()}
        # split into two files, planned in either order
        docs = render(cfg).split("\n---\n")
        cut = data.draw(st.integers(0, len(docs)), label="cut")
        (h.root / "substratus.yaml").unlink()
        (h.root / "one.yaml").write_text("\n---\n".join(docs[:cut]) or "kind: Project\n")
        (h.root / "two.yaml").write_text("\n---\n".join(docs[cut:]) or "kind: Project\n")
        for paths in (["one.yaml", "two.yaml"], ["two.yaml", "one.yaml"]):
            assert_empty(h.plan(paths=paths), cfg)
        # the directory renamed
        moved = h.root.with_name("renamed")
        h.root.rename(moved)
        h.root = moved
        assert_empty(h.plan(), cfg)
        # an unrelated resource, maybe with a context of the same basename as another's
        extra = draw_resource(data.draw, cfg)
        note(f"add {extra.address} (context {extra.context})")
        grown = cfg.copy()
        grown.resources.append(extra)
        (h.root / "two.yaml").unlink()
        (h.root / "one.yaml").unlink()
        p = plan(h, grown)
        new = grown.addresses - cfg.addresses
        assert sorted(c.address for c in p.changes()) == sorted(new), describe(p)
        assert {c.address: c.digest_after for c in p.resource_changes if c.address in digests} == {
            a: d for a, d in digests.items()
        }
        converge(h, grown, cfg)


@given(configs(max_size=6), configs(max_size=6), st.data())
def test_states_sharing_a_store_keep_each_others_versions(
    first: Cfg, second: Cfg, data: st.DataObject
) -> None:
    """Property 11: two states sharing one artifact store (even with the same addresses) never
    remove a version the other keeps — by garbage collection or by destroy."""
    store = FakeRuntime()
    with harness(store) as a, harness(store) as b:
        cfgs = {"a": first, "b": second}
        hs = {"a": a, "b": b}
        applied: dict[str, Cfg | None] = {"a": None, "b": None}
        for _ in range(data.draw(st.integers(2, 6), label="steps")):
            who = data.draw(st.sampled_from(["a", "b"]), label="state")
            step = data.draw(st.sampled_from(["apply", "edit", "destroy"]), label="step")
            h, cfg = hs[who], cfgs[who]
            if step == "edit":
                what, cfg = draw_edit(data.draw, cfg)
                note(f"{who}: edit {what}")
                if not cfg.resources and applied[who] is None:
                    continue  # nothing was ever applied, and there is nothing to apply
            if step == "destroy" and applied[who] is not None:
                note(f"{who}: destroy")
                _what, lifted = unprotected(cfg)
                converge(h, lifted, applied[who])
                p = plan(h, lifted, mode=Mode.DESTROY)
                assert h.apply(p).ok
                applied[who], cfgs[who] = None, lifted
            else:
                note(f"{who}: apply")
                converge(h, cfg, applied[who])
                applied[who], cfgs[who] = cfg, cfg
            assert_versions_kept(a, b)
            for other in ("a", "b"):  # and nothing the other state keeps needs to run again
                if applied[other] is not None:
                    assert_empty(hs[other].plan(), cfgs[other])
