"""Records written before digest format 2 (``tests/engine/legacy/state.json``, made by the
earlier substratus from the configuration beside it) are recognised: nothing reruns, only the
records are rewritten (and a build whose name changed is built under its new name)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from substratus.engine.plan import Action
from substratus.engine.statefile import DIGEST_FORMAT, StateFile
from tests.support.engine import Harness

LEGACY = Path(__file__).parent / "legacy"


def _harness(tmp_path: Path) -> Harness:
    root = tmp_path / "legacy"
    shutil.copytree(LEGACY, root, ignore=shutil.ignore_patterns("state.json"))
    h = Harness(root)
    state = StateFile.from_json((LEGACY / "state.json").read_text())
    h.backend.write(state, None, [])
    h.runtime.live = {
        (state.lineage, a): r.current_version or "" for a, r in state.resources.items()
    }
    return h


def test_an_unchanged_legacy_state_reruns_nothing(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    plan = h.plan()
    actions = {c.address: (c.action, c.record_only) for c in plan.resource_changes}
    new_build = next(a for a in actions if a.startswith("build.sub-trainer-"))
    assert actions.pop(new_build) == (Action.CREATE, False)  # renamed: built under its name
    assert actions.pop("build.trainer") == (Action.DELETE, False)
    assert actions == {a: (Action.UPDATE, True) for a in actions}, actions
    assert plan.runs() == [c for c in plan.resource_changes if c.address == new_build]
    assert h.apply(plan).ok
    assert [a for _action, a in h.runtime.calls] == [new_build, "build.trainer"]
    state = h.state()
    legacy = StateFile.from_json((LEGACY / "state.json").read_text()).resources
    assert all(r.digest_format == DIGEST_FORMAT for r in state.resources.values())
    for address, rec in state.resources.items():  # the versions it made are still its own
        if address in legacy:
            assert rec.current_version == legacy[address].current_version, address
            assert rec.kind == "build" or rec.digest != legacy[address].digest, address
    assert state.resources["model.tuned"].dependencies[0] == new_build
    token = state.resources["dataset.corpus"].spec["loader"]["params"]["token"]
    assert set(token) == {"$sensitive"}
    again = h.plan()
    assert not again.has_changes, [(c.address, c.action) for c in again.changes()]


def test_a_legacy_state_still_sees_real_changes(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    config = h.root / "substratus.yaml"
    text = config.read_text()
    config.write_text(text.replace('since: "2026-01-01"', 'since: "2026-06-01"'))  # ignored
    ignored = {c.address: c for c in h.plan().resource_changes}
    assert ignored["dataset.corpus"].record_only
    config.write_text(text.replace("size: small", "size: large"))
    plan = {c.address: c for c in h.plan().resource_changes}
    assert plan["model.base"].action is Action.REPLACE
    assert plan["model.tuned"].action is Action.REPLACE  # trained on the new base
    assert (
        plan["modelserver.api"].action is Action.UPDATE and not plan["modelserver.api"].record_only
    )
    assert plan["dataset.corpus"].record_only
    assert (
        json.loads((LEGACY / "state.json").read_text())["resources"]["model.base"].get(
            "digest_format"
        )
        is None
    )  # the fixture is a format 1 state
