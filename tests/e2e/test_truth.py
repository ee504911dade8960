"""The plan tells the truth, through the CLI (issue #11): ``--replace`` really runs again, a
saved plan cannot be edited into something else, lifecycle and ``sensitive:`` edits are
metadata, digests are content, and apply acts in the workspace the plan names. Runs are
counted by the jobs themselves (``tests.e2e.counting``), never read from our output."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Project, kill_leftovers
from tests.e2e.counting import make_pipeline, runs, state, write_app


@pytest.fixture
def counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    root = make_pipeline(tmp_path / "proj")
    monkeypatch.setenv("RUNS_LOG", str(tmp_path / "runs.log"))
    p = Project(root)
    yield p
    for ws in ("default", "staging"):
        if (root / ".substratus").exists():
            p.run("destroy", "--auto-approve", "--no-lock", "--workspace", ws, check=None)
    kill_leftovers(tmp_path)


def _log() -> Path:
    return Path(os.environ["RUNS_LOG"])


def _outputs(p: Project, address: str) -> dict[str, Any]:
    return dict(state(p.dir)["resources"][address]["outputs"])


# -- --replace ------------------------------------------------------------------------------------


def test_replace_runs_the_job_again_into_a_new_version(counted: Project) -> None:
    p = counted
    p.run("apply", "--auto-approve")
    assert runs(_log()) == {"data": 1, "trained": 1}
    first = _outputs(p, "dataset.data")["artifacts_path"]

    plan = p.run("plan", "--replace", "dataset.data")
    assert "# (replacement requested with --replace)" in plan.stdout
    assert "inputs changed" not in plan.stdout
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in plan.stdout

    out = p.run("apply", "--auto-approve", "--replace", "dataset.data", "--json")
    assert runs(_log()) == {"data": 2, "trained": 1}  # it ran; nothing else did
    assert "adopt" not in out.stdout
    second = _outputs(p, "dataset.data")["artifacts_path"]
    assert second != first and Path(second, "out.txt").is_file()
    assert Path(first, "out.txt").is_file()  # the previous version is kept
    assert "No changes." in p.run("plan").stdout


def test_replace_restarts_a_server(counted: Project) -> None:
    p = counted
    p.run("apply", "--auto-approve")
    before = _outputs(p, "modelserver.api")
    p.run("apply", "--auto-approve", "--replace", "modelserver.api")
    after = _outputs(p, "modelserver.api")
    assert after["pid"] != before["pid"]
    assert not Path(f"/proc/{before['pid']}").exists() or _zombie(before["pid"])
    assert runs(_log()) == {"data": 1, "trained": 1}


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


# -- saved plans --------------------------------------------------------------------------------


def _edit_plan(path: Path, address: str, change: Any) -> None:
    doc = json.loads(path.read_text())
    for c in doc["resource_changes"]:
        if c["address"] == address:
            change(c)
    path.write_text(json.dumps(doc, indent=2))


def test_an_edited_saved_plan_is_refused_and_nothing_runs(counted: Project, tmp_path: Path) -> None:
    p = counted
    p.run("apply", "--auto-approve")
    p.edit("substratus.yaml", "params: {name: data}", "params: {name: data, v: 2}")
    p.run("plan", "--out", "plan.json")
    serial = state(p.dir)["serial"]
    marker = tmp_path / "injected"
    variants = {
        "after.container.command": lambda c: c["after"]["container"].update(
            command=["touch", str(marker)]
        ),
        "actions": lambda c: c.update(actions=["delete"], after=None),
        "digest_after": lambda c: c.update(digest_after="0" * 64),
    }
    for field, change in variants.items():
        shutil.copy(p.dir / "plan.json", p.dir / "edited.json")
        _edit_plan(p.dir / "edited.json", "dataset.data", change)
        out = p.run("apply", "edited.json", check=1)
        assert "The saved plan is not what its configuration and state produce" in out.stderr
        assert f"dataset.data: {field}" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    doc = json.loads((p.dir / "plan.json").read_text())
    doc["mode"] = "destroy"
    (p.dir / "edited.json").write_text(json.dumps(doc))
    out = p.run("apply", "edited.json", check=1)
    assert 'dataset.data: actions is "replace" in the plan file, but "delete"' in out.stderr
    assert not marker.exists()
    assert runs(_log()) == {"data": 1, "trained": 1}
    assert state(p.dir)["serial"] == serial

    p.run("apply", "plan.json")  # the file as it was made applies exactly
    assert runs(_log()) == {"data": 2, "trained": 2}
    assert "No changes." in p.run("plan").stdout


def test_a_saved_plan_applies_only_in_its_own_workspace(counted: Project) -> None:
    p = counted
    plan = p.run("plan", "--workspace", "staging", "--out", "plan.json")
    assert plan.stdout.startswith("Workspace: staging\n")
    out = p.run("apply", "plan.json", "--workspace", "default", check=1)
    assert "The saved plan is for another workspace" in out.stderr
    assert "'staging'" in out.stderr and "'default'" in out.stderr
    p.run("workspace", "select", "other")
    out = p.run("apply", "plan.json", check=1)
    assert "acts on 'other'" in out.stderr
    assert runs(_log()) == {}
    p.run("workspace", "select", "staging")
    applied = p.run("apply", "plan.json")
    assert "Apply complete (workspace staging)!" in applied.stdout
    assert runs(_log()) == {"data": 1, "trained": 1}
    assert state(p.dir, "staging")["resources"]
    assert not state(p.dir)  # nothing in the default workspace


# -- lifecycle and sensitive are metadata ------------------------------------------------------


def test_lifecycle_and_sensitive_edits_update_the_record_and_run_nothing(counted: Project) -> None:
    p = counted
    p.run("apply", "--auto-approve")
    edits = [
        (
            "name: data\nspec:",
            "name: data\nlifecycle: {ignoreChanges: [spec.loader.params.v]}\nspec:",
        ),
        ("lifecycle: {ignoreChanges", "lifecycle: {preventDestroy: true, ignoreChanges"),
        ("params: {name: data}", "params: {name: data, v: 2}"),  # an ignored change
        ("name: api\nspec:", "name: api\nlifecycle: {retainArtifacts: true}\nspec:"),
    ]
    for old, new in edits:
        p.edit("substratus.yaml", old, new)
        plan = p.run("plan")
        assert "0 to add" in plan.stdout or "No changes." in plan.stdout, plan.stdout
        p.run("apply", "--auto-approve")
        assert "No changes." in p.run("plan").stdout
    assert runs(_log()) == {"data": 1, "trained": 1}
    recorded = state(p.dir)["resources"]["dataset.data"]
    assert recorded["lifecycle"] == {
        "ignoreChanges": ["spec.loader.params.v"],
        "preventDestroy": True,
    }

    # the protection is recorded: destroying is refused, and lifting it takes effect at once
    out = p.run("destroy", "--auto-approve", check=1)
    assert "dataset.data has lifecycle.preventDestroy set" in out.stderr
    p.edit("substratus.yaml", "preventDestroy: true", "preventDestroy: false")
    p.run("apply", "--auto-approve")
    assert runs(_log()) == {"data": 1, "trained": 1}
    assert "preventDestroy" not in state(p.dir)["resources"]["dataset.data"]["lifecycle"]


def test_marking_a_param_sensitive_stores_only_its_fingerprint(counted: Project) -> None:
    p = counted
    p.edit("substratus.yaml", "params: {name: data}", "params: {name: data, token: s3cret}")
    p.run("apply", "--auto-approve")
    assert "s3cret" in p.state_file.read_text() + _journal(p)
    p.edit(
        "substratus.yaml",
        "name: data\nspec:",
        "name: data\nsensitive: [spec.loader.params.token]\nspec:",
    )
    plan = p.run("plan")
    assert "record only: nothing runs" in plan.stdout
    assert "s3cret" not in plan.stdout
    p.run("apply", "--auto-approve")
    assert runs(_log()) == {"data": 1, "trained": 1}
    params = state(p.dir)["resources"]["dataset.data"]["spec"]["loader"]["params"]
    assert set(params["token"]) == {"$sensitive"}


def _journal(p: Project) -> str:
    journal = p.state_file.with_suffix(".journal")
    return journal.read_text() if journal.exists() else ""


# -- digests are content ------------------------------------------------------------------------


def test_unrelated_resources_renames_and_file_order_change_no_digest(
    counted: Project, tmp_path: Path
) -> None:
    p = counted
    p.run("apply", "--auto-approve")
    digests = {a: r["digest"] for a, r in state(p.dir)["resources"].items()}

    # an unrelated resource whose context directory has the same basename
    write_app(p.dir / "other" / "app")
    (p.dir / "other" / "extra.yaml").write_text(
        "kind: Dataset\nname: extra\nspec:\n"
        "  container: {local: {path: ./app}, command: [python3, job.py]}\n"
        "  loader: {params: {name: extra}}\n"
    )
    plan = p.run("plan", "-f", "substratus.yaml", "-f", "other/extra.yaml")
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in plan.stdout  # its build and itself
    p.run("apply", "--auto-approve", "-f", "other/extra.yaml", "-f", "substratus.yaml")
    assert runs(_log()) == {"data": 1, "trained": 1, "extra": 1}
    now = {a: r["digest"] for a, r in state(p.dir)["resources"].items()}
    assert {a: now[a] for a in digests} == digests
    # the order of -f never matters: same state, no changes
    for files in (("substratus.yaml", "other/extra.yaml"), ("other/extra.yaml", "substratus.yaml")):
        args = [x for f in files for x in ("-f", f)]
        assert "No changes." in p.run("plan", *args).stdout

    # the whole configuration directory renamed (moved with its .substratus), server running
    p.run("apply", "--auto-approve")  # without other/extra.yaml: it and its build go
    shutil.rmtree(p.dir / "other")
    moved = tmp_path / "renamed"
    p.dir.rename(moved)
    p.dir = moved
    assert "No changes." in p.run("plan", "--detailed-exitcode").stdout
    p.edit("substratus.yaml", "params: {name: trained}", "params: {name: trained, v: 2}")
    p.run("apply", "--auto-approve")  # the model trains on the dataset where it is now
    assert runs(_log()) == {"data": 1, "trained": 2, "extra": 1}
    assert "No changes." in p.run("plan", "--detailed-exitcode").stdout
