"""Golden planner/renderer cases (pyinfra-style): one directory per case under tests/cases/.

Each case holds ``substratus.yaml`` (the configuration to plan) and optionally ``before.yaml``
(a configuration applied first, through the in-memory runtime, to make the prior state),
``options.json`` (``mode``, ``targets``, ``replace``, ``refresh``, ``missing`` — addresses the
runtime reports as deleted outside substratus —, ``taint``, ``externals``, ``durations`` — the
seconds recorded as each resource's last successful run, 600 when not given —), and the expected
``expected_plan.json`` and ``expected_plan.txt``. Run with ``UPDATE_GOLDEN=1`` to rewrite the
expectations after reviewing a deliberate change.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.address import Address
from substratus.engine.plan import Mode, Plan
from substratus.engine.plan_document import parse_plan, plan_dict, plan_text
from substratus.engine.render import render_plan
from substratus.engine.runtime import ExternalResource
from tests.support.engine import Harness

CASES = Path(__file__).parent.parent / "cases"


def _normalise(plan: Plan) -> dict[str, Any]:
    data = plan_dict(plan)
    data["created_at"] = "<created_at>"
    data["substratus_version"] = "<version>"
    data["prior_state"]["lineage"] = "<lineage>" if data["prior_state"]["lineage"] else None
    data["config_digest"] = "<config_digest>"
    data["config_files"] = ["<config>"]
    return data


def run_case(case: Path, tmp_path: Path) -> Plan:
    h = Harness(tmp_path)
    options: dict[str, Any] = {}
    if (case / "options.json").exists():
        options = json.loads((case / "options.json").read_text())
    for (kind, ns, name), digest in (
        (tuple(k.split("/")), v) for k, v in options.get("externals", {}).items()
    ):
        h.runtime.externals[(kind, ns, name)] = ExternalResource(
            digest, {"artifacts": f"mem://{kind}/{name}/{digest}"}
        )
    if (case / "before.yaml").exists():
        first = h.plan((case / "before.yaml").read_text())
        assert h.apply(first).ok
        h.record_durations(options.get("durations", {}), default=600.0)
    if options.get("taint"):
        state, token = h.backend.read()
        assert state is not None
        for a in options["taint"]:
            state.resources[a].status = "tainted"
        state.serial += 1
        h.backend.write(state, token, [])
    h.runtime.missing |= set(options.get("missing", []))
    shutil.copy(case / "substratus.yaml", tmp_path / "substratus.yaml")
    return h.plan(
        mode=Mode(options.get("mode", "normal")),
        targets=[Address.parse(a) for a in options.get("targets", [])],
        replace=[Address.parse(a) for a in options.get("replace", [])],
        refresh=options.get("refresh", True),
    )


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_golden(case: str, tmp_path: Path) -> None:
    plan = run_case(CASES / case, tmp_path)
    got_json = json.dumps(_normalise(plan), indent=2, sort_keys=True) + "\n"
    got_text = render_plan(plan)
    exp_json, exp_text = CASES / case / "expected_plan.json", CASES / case / "expected_plan.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        exp_json.write_text(got_json)
        exp_text.write_text(got_text)
    assert exp_json.exists(), f"no expectation yet: run with UPDATE_GOLDEN=1 and review {case}"
    assert got_json == exp_json.read_text()
    assert got_text == exp_text.read_text()
    # A plan survives its JSON round trip unchanged.
    assert plan_text(parse_plan(plan_text(plan))) == plan_text(plan)
