"""Hostile and careless command lines (issue #13: command line), through the real CLI.

A contradictory or meaningless flag, an artifact store URL no runtime can use, a malformed
kubeconfig and a pushed state whose records are not keyed by their addresses must each be one
clear error: exit 1, what / where / what to do, no traceback, no "This is a bug", within the
timeout, and nothing changed (no lock left, the state as it was).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.counting import make_pipeline, runs

TIMEOUT = 60.0


def cli(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "substratus", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )


def one_error(out: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 1 with exactly one ``Error:`` that says each of ``expected``; no traceback."""
    both = out.stdout + out.stderr
    assert out.returncode == 1, both
    assert out.stderr.count("Error:") == 1, out.stderr
    for text in expected:
        assert text in out.stderr, out.stderr
    for bad in ("Traceback", "This is a bug", "unexpected"):
        assert bad not in both, both


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_pipeline(tmp_path / "project")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--refresh-only", "--no-refresh"], ["Incompatible options", "--refresh-only"]),
        (["--state", ""], ["--state is empty", "leave the option out"]),
        (["--artifacts", " "], ["--artifacts is empty"]),
        (["--timeout", "-1"], ["Invalid --timeout -1", "positive number"]),
        (["--timeout", "0"], ["Invalid --timeout 0"]),
        (["--timeout", "nan"], ["Invalid --timeout nan", "finite number"]),
        (["--timeout", "inf"], ["Invalid --timeout inf"]),
        (["--artifacts", "ftp://host/store"], ["'ftp://host/store'", "file:///absolute/dir"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0].startswith("-") else "",
)
def test_a_meaningless_flag_is_one_error_and_nothing_runs(
    root: Path, tmp_path: Path, args: list[str], expected: list[str]
) -> None:
    log = tmp_path / "runs.log"
    out = cli(root, "apply", "--auto-approve", *args, env={"RUNS_LOG": str(log)})
    one_error(out, *expected)
    assert runs(log) == {}
    assert not (root / ".substratus" / "state" / "default.lock").exists()


def test_refresh_only_and_no_refresh_are_refused_by_plan_too(root: Path) -> None:
    one_error(cli(root, "plan", "--refresh-only", "--no-refresh"), "Incompatible options")


def test_an_artifact_store_the_cluster_cannot_use_is_one_error(root: Path) -> None:
    out = cli(root, "plan", "--runtime", "kubernetes", "--artifacts", "ftp://host/store")
    one_error(out, "Unsupported artifact store 'ftp://host/store'", "pvc://claim")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("apiVersion: v1\nclusters: [\n  - {name: x\n", "Line 3, column 3"),
        ("- just\n- a list\n", "It holds a YAML list"),
        ("key: [unclosed\n", "Line 2"),
    ],
    ids=["unclosed-flow", "a-list", "unclosed-list"],
)
def test_a_malformed_kubeconfig_is_one_error_naming_the_file(
    root: Path, tmp_path: Path, content: str, expected: str
) -> None:
    kubeconfig = tmp_path / "broken.kubeconfig"
    kubeconfig.write_text(content)
    out = cli(
        root,
        "plan",
        "--runtime",
        "kubernetes",
        "--artifacts",
        "pvc://claim",
        env={"KUBECONFIG": str(kubeconfig)},
    )
    one_error(out, f"Cannot read the Kubernetes configuration {kubeconfig}", expected)


def _pushed(root: Path, tmp_path: Path, edit: str) -> tuple[Path, dict[str, object]]:
    """The project's applied state, pulled, with one record edited as ``edit`` says."""
    state = json.loads(cli(root, "state", "pull").stdout)
    resources = state["resources"]
    if edit == "not an address":
        resources["not an address"] = resources.pop("model.trained")
    elif edit == "namespace written out":
        resources["default/model.trained"] = resources.pop("model.trained")
    elif edit == "another record's key":
        resources["model.other"] = resources.pop("model.trained")
    elif edit == "dependency":
        resources["model.trained"]["dependencies"] = ["the data"]
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(state))
    return path, state


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("not an address", "'not an address' is not a resource address"),
        ("namespace written out", "whose address is 'model.trained'"),
        ("another record's key", "'model.other' describes model 'trained'"),
        ("dependency", "depends on 'the data', which is not a resource address"),
    ],
)
@pytest.mark.parametrize("force", [True, False], ids=["force", "no-force"])
def test_state_push_validates_every_record_even_with_force(
    root: Path, tmp_path: Path, edit: str, expected: str, force: bool
) -> None:
    log = tmp_path / "runs.log"
    env = {"RUNS_LOG": str(log)}
    applied = cli(root, "apply", "--auto-approve", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    try:
        before = cli(root, "state", "pull").stdout
        path, _ = _pushed(root, tmp_path, edit)
        out = cli(root, "state", "push", str(path), *(["--force"] if force else []))
        one_error(out, "Invalid state file", expected, "even with --force")
        assert cli(root, "state", "pull").stdout == before  # nothing was written
        plan = cli(root, "plan", "--detailed-exitcode", env=env)
        assert plan.returncode == 0 and "No changes." in plan.stdout, plan.stdout + plan.stderr
    finally:
        cli(root, "destroy", "--auto-approve", "--no-lock", env=env)


def test_state_push_force_still_pushes_a_valid_state_of_another_lineage(
    root: Path, tmp_path: Path
) -> None:
    state = {
        "version": 1,
        "lineage": "another-lineage",
        "serial": 3,
        "resources": {
            "model.trained": {"kind": "model", "namespace": "default", "name": "trained"},
            "team/dataset.data": {"kind": "dataset", "namespace": "team", "name": "data"},
        },
    }
    path = tmp_path / "other.json"
    path.write_text(json.dumps(state))
    out = cli(root, "state", "push", "--force", str(path))
    assert out.returncode == 0, out.stderr
    listed = cli(root, "state", "list").stdout.split()
    assert listed == ["model.trained", "team/dataset.data"]
