"""``--max-cost`` and ``lifecycle.maxCost`` through the real CLI (local runtime, file state):
``plan`` and ``apply`` fail with exit 1 and a diagnostic before anything runs, and a saved plan
is checked against the estimate it recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.e2e.conftest import QUICKSTART, Project

CONFIG = """\
kind: Dataset
name: corpus
spec:
  container:
    local: {path: ./loader}
    command: ["python3", "load.py"]
  loader:
    params: {lowercase: true}
  resources: {cpu: 64, memory: 256}
"""
COST = "≈ $3.11"  # 1 hour of 64 vCPU and 256 GB: 64 * 0.0316 + 256 * 0.00424


def applied_with_an_hour_long_run(tmp_path: Path) -> Project:
    """The dataset applied once, its run recorded as one hour, and its params changed since."""
    shutil.copytree(QUICKSTART / "loader", tmp_path / "loader")
    (tmp_path / "substratus.yaml").write_text(CONFIG)
    p = Project(tmp_path)
    p.run("apply", "--auto-approve")
    state = json.loads(p.run("state", "pull").stdout)
    state["resources"]["dataset.corpus"]["last_run"]["seconds"] = 3600.0
    state["serial"] += 1
    (tmp_path / "edited.json").write_text(json.dumps(state))
    p.run("state", "push", "edited.json")
    p.edit("substratus.yaml", "lowercase: true", "lowercase: false")
    return p


def test_max_cost_fails_plan_and_apply_before_anything_runs(tmp_path: Path) -> None:
    p = applied_with_an_hour_long_run(tmp_path)
    before = p.run("state", "pull").stdout

    out = p.run("plan", check=0)
    assert f"-/+ dataset.corpus   64 vCPU, 256 GB   1h 00m   {COST}" in out.stdout
    assert "Total: ≈ $3.11 for the jobs." in out.stdout

    for command in (["plan"], ["apply", "--auto-approve"]):
        out = p.run(*command, "--max-cost", "1", check=1)
        assert "Traceback" not in out.stderr
        assert "Error: The plan would cost more than --max-cost" in out.stderr
        assert f"dataset.corpus: {COST} (64 vCPU, 256 GB for 1h 00m, its last run)" in out.stderr
        assert "over --max-cost $1.00" in out.stderr
    assert p.run("state", "pull").stdout == before  # nothing ran, nothing was recorded

    out = p.run("plan", "--max-cost", "5", check=0)  # under the limit
    assert "Error" not in out.stderr and "Plan: 1 to add, 0 to change, 1 to destroy." in out.stdout


def test_lifecycle_max_cost_and_a_saved_plan(tmp_path: Path) -> None:
    p = applied_with_an_hour_long_run(tmp_path)
    p.run("plan", "--out", "plan.json")
    saved = json.loads(p.run("show", "--json", "plan.json").stdout)
    assert saved["estimate"]["totals"]["jobs_cost"] == 3.1078
    assert "### Estimate" in p.run("show", "--format", "markdown", "plan.json").stdout

    # A saved plan: the estimate it recorded is held against --max-cost, before anything runs.
    out = p.run("apply", "plan.json", "--max-cost", "2", check=1)
    assert "Error: The plan would cost more than --max-cost" in out.stderr

    # lifecycle.maxCost: the resource's own cap, for plan and apply alike.
    config = (tmp_path / "substratus.yaml").read_text()
    (tmp_path / "substratus.yaml").write_text(config + "lifecycle:\n  maxCost: 2\n")
    for command in (["plan"], ["apply", "--auto-approve"]):
        out = p.run(*command, check=1)
        assert "Error: dataset.corpus would cost more than its lifecycle.maxCost" in out.stderr
        assert f"{COST} (64 vCPU, 256 GB for 1h 00m, its last run), over its" in out.stderr

    (tmp_path / "substratus.yaml").write_text(config)  # the saved plan is fresh again
    out = p.run("apply", "plan.json", "--max-cost", "5")
    assert "Apply complete! Resources: 1 added, 0 changed, 1 destroyed." in out.stdout
