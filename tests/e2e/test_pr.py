"""Plans in pull requests, end to end through the CLI: the sticky comment on a real local HTTP
server that answers GitHub's REST endpoints (tests/support/github_server.py), the job summary,
`plan --json` events, `plan/show --format markdown`, `graph`, and applying only the plan whose
SHA-256 was reviewed."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import yaml

from substratus.engine.render_graph import check_mermaid
from tests.e2e.conftest import ROOT, Project
from tests.support.github_server import PR, REPO, TOKEN, FakeGitHub


def gh_env(fake: FakeGitHub, project: Project, pr: int = PR) -> dict[str, str]:
    event = project.dir.parent / f"event-{pr}.json"
    event.write_text(json.dumps({"action": "synchronize", "pull_request": {"number": pr}}))
    return {
        "GITHUB_API_URL": fake.url,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_WORKSPACE": str(project.dir.parent),
        "GITHUB_STEP_SUMMARY": str(project.dir.parent / "summary.md"),
    }


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_plan_is_one_sticky_comment_and_only_the_reviewed_plan_applies(
    project: Project, github_server: FakeGitHub
) -> None:
    env = gh_env(github_server, project)
    project.run("plan", "--out", "plan.json")
    posted = project.run("comment", "plan.json", env=env)
    assert f"Posted the plan comment on {REPO}#{PR}" in posted.stdout
    (first,) = github_server.comments_on(REPO, PR)
    body = first["body"]
    assert body.startswith("<!-- substratus:plan workspace=default dir=quickstart -->")
    assert "Plan: 8 to add, 0 to change, 0 to destroy." in body
    assert f"Plan SHA-256: `{sha256_of(project.dir / 'plan.json')}`" in body
    assert "```mermaid" in body
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert (
        "Plan: 8 to add" in summary and "Wrote the full plan to the job summary." in posted.stdout
    )

    # a new push: the same comment is edited in place
    project.edit("substratus.yaml", "params: {epochs: 3,", "params: {epochs: 4,")
    project.run("plan", "--out", "plan.json")
    updated = project.run("comment", "plan.json", env=env)
    assert "Updated the plan comment" in updated.stdout
    (again,) = github_server.comments_on(REPO, PR)
    assert again["id"] == first["id"] and again["body"] != body
    assert f"Plan SHA-256: `{sha256_of(project.dir / 'plan.json')}`" in again["body"]
    assert "Kept the plan comment" in project.run("comment", "plan.json", env=env).stdout

    # another workspace keeps its own comment
    project.run("plan", "--workspace", "staging", "--out", "staging.json")
    project.run("comment", "staging.json", env=env)
    bodies = [c["body"] for c in github_server.comments_on(REPO, PR)]
    assert len(bodies) == 2 and "workspace=staging" in bodies[1]

    # apply refuses a plan whose hash is not the reviewed one, and applies the reviewed one
    wrong = project.run("apply", "plan.json", "--expect-sha256", "0" * 64, check=1)
    assert "The plan file is not the plan that was reviewed" in wrong.stderr
    assert not project.state_file.exists()
    tampered = project.dir / "plan.json"
    text = tampered.read_text()
    tampered.write_text(text.replace('"epochs": 4', '"epochs": 40', 1))
    assert tampered.read_text() != text
    refused = project.run("apply", "plan.json", "--expect-sha256", "pr", env=env, check=1)
    assert "not the plan that was reviewed" in refused.stderr
    tampered.write_text(text)
    applied = project.run("apply", "plan.json", "--expect-sha256", "pr", env=env)
    assert "Apply complete! Resources: 8 added" in applied.stdout


def test_plan_json_streams_events_and_markdown_matches_show(project: Project) -> None:
    out = project.run("plan", "--json", "--out", "plan.json").stdout.splitlines()
    events = [json.loads(line) for line in out]
    assert events[0]["type"] == "version"
    kinds = [e["type"] for e in events]
    assert kinds.count("planned_change") == 8
    summary = next(e for e in events if e["type"] == "change_summary")
    assert summary["add"] == 8 and summary["has_changes"] is True
    assert summary["estimate"]["jobs_unknown"] == 7  # never run: durations unknown
    assert summary["sha256"] == sha256_of(project.dir / "plan.json")
    assert events[-1].pop("timestamp")  # every event has one (issue #16)
    assert events[-1] == {
        "type": "plan_saved",
        "path": "plan.json",
        "sha256": summary["sha256"],
    }
    planned = project.run("plan", "--format", "markdown", "--out", "plan.json").stdout
    shown = project.run("show", "--format", "markdown", "plan.json").stdout
    assert planned == shown
    assert f"Plan SHA-256: `{sha256_of(project.dir / 'plan.json')}`" in shown


def test_markdown_names_the_saved_plan_file_or_says_none_was_saved(project: Project) -> None:
    unsaved = project.run("plan", "--format", "markdown").stdout
    assert "This plan was not saved, so it cannot be applied exactly as shown." in unsaved
    assert "`substratus plan --out plan.json`" in unsaved
    assert "To apply exactly this plan" not in unsaved and "Plan SHA-256" not in unsaved
    assert not (project.dir / "plan.json").exists()

    (project.dir / "plans").mkdir()
    saved = project.run("plan", "--format", "markdown", "--out", "plans/pr-7.json").stdout
    sha = sha256_of(project.dir / "plans" / "pr-7.json")
    apply_line = (
        f"To apply exactly this plan: `substratus apply plans/pr-7.json --expect-sha256 {sha}`"
    )
    assert saved.endswith(apply_line + "\n") and "not saved" not in saved
    shown = project.run("show", "--format", "markdown", "plans/pr-7.json").stdout
    assert shown == saved
    applied = project.run("apply", "plans/pr-7.json", "--expect-sha256", sha)
    assert "Apply complete! Resources: 8 added" in applied.stdout


def test_graph_prints_the_configuration_and_a_plan(project: Project) -> None:
    mermaid = project.run("graph", "--format", "mermaid").stdout
    assert check_mermaid(mermaid) == []
    for address in ("dataset.tiny-corpus", "model.tuned-ngram", "modelserver.tuned-ngram"):
        assert address in mermaid
    dot = project.run("graph").stdout
    assert dot.startswith('digraph "substratus" {') and "->" in dot
    project.run("plan", "--out", "plan.json")
    planned = project.run("graph", "plan.json", "--format", "mermaid").stdout
    assert check_mermaid(planned) == [] and "+ dataset.tiny-corpus" in planned
    if shutil_which("dot"):
        svg = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True)
        assert svg.returncode == 0 and "<svg" in svg.stdout


def mermaid_graph(text: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """Labels by address (``"~ modelserver.x"`` → ``modelserver.x``: ``"~"``) and edges by
    address, read back from a flowchart ``graph`` printed."""
    labels = dict(re.findall(r'^  (n\d+)\["([^"]*)"\]$', text, flags=re.M))
    symbol = {i: lab.rsplit(" ", 1)[0] if " " in lab else "" for i, lab in labels.items()}
    address = {i: lab.rsplit(" ", 1)[-1] for i, lab in labels.items()}
    edges = re.findall(r"^  (n\d+) --> (n\d+)$", text, flags=re.M)
    return (
        {address[i]: symbol[i] for i in labels},
        {(address[a], address[b]) for a, b in edges},
    )


def test_the_graph_of_a_plan_shows_every_resource_and_edge(project: Project) -> None:
    project.run("apply", "--auto-approve")
    project.edit(
        "substratus.yaml", "  model: tuned-ngram\n", "  model: tuned-ngram\n  params: {v: 2}\n"
    )
    project.run("plan", "--out", "plan.json")
    text = project.run("graph", "plan.json", "--format", "mermaid").stdout
    assert check_mermaid(text) == []
    symbols, edges = mermaid_graph(text)
    configured, config_edges = mermaid_graph(project.run("graph", "--format", "mermaid").stdout)
    assert set(symbols) == set(configured) and len(symbols) == 8
    assert edges == config_edges and len(edges) == 7
    assert symbols.pop("modelserver.tuned-ngram") == "~"
    assert set(symbols.values()) == {""}  # the 7 unchanged resources, drawn as no-ops
    assert "class " in text and " noop" in text and " update" in text
    dot = project.run("graph", "plan.json").stdout
    assert dot.count(" -> ") == 7 and dot.count('fillcolor="#f6f8fa"') == 7


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


def test_the_example_workflow_uses_real_commands_and_flags() -> None:
    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text())
    assert workflow["permissions"]["pull-requests"] == "write"
    assert workflow["permissions"]["id-token"] == "write"
    runs = [
        step["run"]
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if "substratus " in step.get("run", "")
    ]
    assert any("comment plan.ndjson" in r for r in runs)
    assert any("--expect-sha256 pr" in r for r in runs)
    for run in runs:
        for line in run.splitlines():
            m = re.match(r"\s*substratus (\w+)(.*)", line)
            if not m:
                continue
            helptext = subprocess.run(
                ["python3", "-m", "substratus", m.group(1), "--help"],
                capture_output=True,
                text=True,
            ).stdout
            for flag in re.findall(r"(--[a-z0-9-]+)", m.group(2)):
                assert flag in helptext, (m.group(1), flag)
