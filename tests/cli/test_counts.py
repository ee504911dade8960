"""The plan's counts and reasons mean what they say, through the real CLI (local runtime, file
state): a replacement is counted as Terraform counts it (one add and one destroy) and the summary
line (and the apply's) says so, and that the replaced dataset keeps its previous version; an
implicit build that goes away says why (its user's source changed, or nothing uses it any
more), never "not in the configuration", which it never was."""

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
"""


def applied(tmp_path: Path) -> Project:
    shutil.copytree(QUICKSTART / "loader", tmp_path / "loader")
    (tmp_path / "substratus.yaml").write_text(CONFIG)
    p = Project(tmp_path)
    p.run("apply", "--auto-approve")
    return p


def reasons(p: Project, address: str) -> list[str]:
    """The reasons ``plan --json`` gives for the change of ``address``."""
    events = [json.loads(line) for line in p.run("plan", "--json").stdout.splitlines()]
    (change,) = [
        e["change"]
        for e in events
        if e["type"] == "planned_change" and e["change"]["address"] == address
    ]
    return [f"{r['code']}: {r['message']}" for r in change["reasons"]]


def test_a_moved_source_replaces_and_its_old_build_goes_because_the_source_changed(
    tmp_path: Path,
) -> None:
    p = applied(tmp_path)
    shutil.copytree(tmp_path / "loader", tmp_path / "loader2")
    with (tmp_path / "loader2" / "load.py").open("a") as f:
        f.write("# another source\n")
    p.edit("substratus.yaml", "path: ./loader}", "path: ./loader2}")

    out = p.run("plan").stdout
    assert (
        "Plan: 2 to add, 0 to change, 2 to destroy. Replacements: 1, counted in both add and "
        "destroy; its previous version is kept." in out
    )
    assert "not in the configuration" not in out
    assert "because its source changed: dataset.corpus no longer builds from it" in out
    assert reasons(p, "build.loader") == [
        "unused_build: its source changed: dataset.corpus no longer builds from it"
    ]

    done = p.run("apply", "--auto-approve").stdout
    assert (
        "Apply complete! Resources: 2 added, 0 changed, 2 destroyed. Replacements: 1, counted in "
        "both add and destroy; its previous version is kept." in done
    )


def test_a_build_nothing_uses_goes_because_nothing_uses_it(tmp_path: Path) -> None:
    p = applied(tmp_path)
    (tmp_path / "substratus.yaml").write_text("")

    out = p.run("plan").stdout
    assert "Plan: 0 to add, 0 to change, 2 to destroy." in out and "Replacements" not in out
    assert reasons(p, "dataset.corpus") == [
        "not_in_config: dataset.corpus is not in the configuration"
    ]
    assert reasons(p, "build.loader") == [
        "unused_build: no resource in the configuration uses its source any more"
    ]
