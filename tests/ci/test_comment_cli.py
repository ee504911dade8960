"""``substratus comment`` through the CLI against the fake GitHub (tests/support/github_server.py),
in a checkout whose configuration is the quickstart in ``ml/``: the comment names the commit and
links the run; the job summary holds the field diffs; a failed plan (``plan --json``'s error
events, or a stream that stops) replaces the comment, says it failed with the error and that the
plan shown before is outdated; a 10,000-resource plan fits, keeps its reasons and has no long
line. Comment bodies are compared with golden files under ``tests/ci/golden/`` (``UPDATE_GOLDEN=1``
rewrites them, after review), with the plan's SHA-256 and substratus's version normalised."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from substratus import __version__
from substratus.engine.plan import Action, Input, Mode, Plan, Reason, ReasonCode, ResourceChange
from substratus.engine.plan_document import plan_text
from tests.render.gfm import gfm_problems
from tests.render.plans import layout_problems
from tests.support.github_server import PR, REPO, TOKEN, FakeGitHub

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
SHA = "1234567890abcdef1234567890abcdef12345678"  # GITHUB_SHA: the test merge commit
HEAD = "abcdefabcdefabcdefabcdefabcdefabcdefabcd"  # the pull request's head
SERVER = "https://github.example"
RUN = f"{SERVER}/{REPO}/actions/runs/4242"
MAX_LINE = 200  # no line of a shortened comment is longer


@dataclass
class Checkout:
    root: Path
    env: dict[str, str]

    def run(self, *args: str, check: int = 0, **more: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "substratus", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1", **self.env, **more},
        )
        assert proc.returncode == check, (
            f"substratus {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
        return proc

    def plan_json(self, *args: str, check: int = 0) -> Path:
        """``plan --json`` as a CI step runs it: its stdout in ``plan.ndjson``."""
        out = self.root / "plan.ndjson"
        out.write_text(self.run("plan", "--json", *args, check=check).stdout, encoding="utf-8")
        return out

    @property
    def summary(self) -> Path:
        return Path(self.env["GITHUB_STEP_SUMMARY"])

    def edit(self, old: str, new: str) -> None:
        path = self.root / "ml" / "substratus.yaml"
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def checkout(tmp_path: Path, github_server: FakeGitHub) -> Checkout:
    root = tmp_path / "repo"
    shutil.copytree(
        ROOT / "examples" / "quickstart", root / "ml", ignore=shutil.ignore_patterns(".substratus")
    )
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": PR, "head": {"sha": HEAD}}}))
    env = {
        "GITHUB_API_URL": github_server.url,
        "GITHUB_SERVER_URL": SERVER,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_WORKSPACE": str(root),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_SHA": SHA,
        "GITHUB_RUN_ID": "4242",
        "GITHUB_RUN_ATTEMPT": "1",
    }
    return Checkout(root, env)


def the_comment(fake: FakeGitHub) -> dict[str, object]:
    (comment,) = fake.comments_on(REPO, PR)
    return comment


def assert_golden(name: str, body: str) -> None:
    text = re.sub(r"\b[0-9a-f]{64}\b", "<sha256>", body).replace(f"`{__version__}`", "`<version>`")
    path = GOLDEN / f"{name}.md"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no expectation yet: run with UPDATE_GOLDEN=1 and review {name}"
    assert text == path.read_text(encoding="utf-8")
    assert layout_problems(body) == []
    assert gfm_problems(body) == []


def test_the_comment_names_its_commit_and_run_and_the_summary_holds_the_diffs(
    checkout: Checkout, github_server: FakeGitHub
) -> None:
    checkout.run("plan", "-f", "ml", "--out", "plan.json")
    posted = checkout.run("comment", str(checkout.root / "plan.json"))  # as a runner's path
    assert f"Posted the plan comment on {REPO}#{PR}" in posted.stdout
    body = str(the_comment(github_server)["body"])
    assert_golden("plan", body)
    assert str(checkout.root) not in body  # the file is named as typed here: plan.json
    run_line = (
        f"Planned at commit [`{SHA[:12]}`]({SERVER}/{REPO}/commit/{SHA})\n(the pull request's "
        f"head `{HEAD[:12]}` merged into its base)\n· [CI run 4242]({RUN})"
    )
    assert run_line in body
    assert "`substratus apply plan.json --expect-sha256 " in body
    summary = checkout.summary.read_text(encoding="utf-8")
    assert run_line in summary and "```diff\n" in summary
    assert "+       loader.params.lowercase = true" in summary
    shown = checkout.run("show", "--format", "markdown", "plan.json").stdout
    for text in (body, summary, shown):  # no pointer to a summary that is not there
        assert "job summary" not in text and "shortened" not in text


def test_a_failed_plan_replaces_the_comment_and_outdates_the_plan_it_showed(
    checkout: Checkout, github_server: FakeGitHub
) -> None:
    checkout.run("plan", "-f", "ml", "--out", "plan.json")
    checkout.run("comment", "plan.json")
    first = the_comment(github_server)

    checkout.edit("params: {epochs: 3,", "params: {epochs: 3, bogusField: 1, ")
    checkout.edit("kind: Dataset", "kind: Datasett")
    stream = checkout.plan_json("-f", "ml", "--out", "plan.json", check=1)
    events = [json.loads(line) for line in stream.read_text().splitlines()]
    assert events[0]["type"] == "version"
    assert {e["type"] for e in events[1:]} == {"diagnostic"}
    assert all(e["severity"] == "error" for e in events[1:])

    failed = checkout.run("comment", "-f", "ml", str(stream), check=1)
    assert f"Updated the plan comment on {REPO}#{PR} (the plan failed)" in failed.stdout
    comment = the_comment(github_server)
    body = str(comment["body"])
    assert comment["id"] == first["id"]
    assert_golden("failed", body)
    assert "**The plan failed.**" in body and "Datasett" in body
    assert (
        "The plan this comment showed before (**Plan: 8 to add, 0 to change, 0 to destroy.**, "
        f"planned at commit `{SHA[:12]}`) is outdated" in body
    )
    assert f"Tried at commit [`{SHA[:12]}`]" in body and f"[CI run 4242]({RUN})" in body
    assert "Plan SHA-256" not in body and "The plan failed" in checkout.summary.read_text()
    refused = checkout.run("apply", "plan.json", "-f", "ml", "--expect-sha256", "pr", check=1)
    assert f"The last plan on {REPO}#{PR} failed" in refused.stderr  # nothing applies from it

    # a second failure at a new commit still names the plan that is outdated
    newer = "fedcba9876543210fedcba9876543210fedcba98"
    checkout.run("comment", "-f", "ml", str(stream), check=1, GITHUB_SHA=newer)
    again = str(the_comment(github_server)["body"])
    assert f"Tried at commit [`{newer[:12]}`]" in again
    assert f"0 to destroy.**, planned at commit `{SHA[:12]}`) is outdated" in again

    # fixed: the stream of a plan that succeeded posts the plan it saved
    checkout.edit("kind: Datasett", "kind: Dataset")
    checkout.edit("bogusField: 1, ", "")
    stream = checkout.plan_json("-f", "ml", "--out", "plan.json")
    posted = checkout.run("comment", str(stream))
    assert f"Updated the plan comment on {REPO}#{PR}:" in posted.stdout
    body = str(the_comment(github_server)["body"])
    assert "Plan: 8 to add" in body and "failed" not in body and "outdated" not in body
    assert f"Plan SHA-256: `{sha256_of(checkout.root / 'plan.json')}`" in body


def sha256_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_plan_that_stopped_without_an_error_is_posted_as_failed(
    checkout: Checkout, github_server: FakeGitHub
) -> None:
    unsaved = checkout.plan_json("-f", "ml")  # a plan, but not saved: nothing to post
    refused = checkout.run("comment", str(unsaved), check=1)
    assert "holds a plan that was not saved" in refused.stderr
    assert github_server.comments_on(REPO, PR) == []

    stream = checkout.plan_json("-f", "ml", "--no-such-flag", check=1)  # a usage error
    assert stream.read_text() == ""
    checkout.run("comment", "-f", "ml", str(stream), check=1)
    body = str(the_comment(github_server)["body"])
    assert_golden("stopped", body)
    assert (
        "reported no error (it was interrupted, or it failed before it could start): the log of "
        f"[CI run 4242]({RUN}) says why." in body
    )


# -- 10,000 resources ------------------------------------------------------------------------------


def change(address: str, action: Action, reasons: list[Reason], deps: list[str]) -> ResourceChange:
    kind, name = address.split(".")
    before = None if action is Action.CREATE else {"params": {"epochs": 3}}
    after = None if action is Action.DELETE else {"params": {"epochs": 5}}
    return ResourceChange(
        address, kind, "default", name, action, reasons, before, after,
        dependencies=[Input(d) for d in deps],
    )  # fmt: skip


def big_plan() -> Plan:
    """7,000 creations, 2,950 replacements because build.big2's source changed (too many of
    them to list every address in a comment), 50 deletions."""
    why = Reason(
        ReasonCode.DEPENDENCY_CHANGED, "build.big2 changed (spec.contentHash)", None, "build.big2"
    )
    new = Reason(ReasonCode.NEW, "not in the state yet")
    changes = [change(f"dataset.d{i:05}", Action.CREATE, [new], []) for i in range(7000)]
    changes += [
        change(f"model.llama-7b-tuned-shard-{i:05}", Action.REPLACE, [why], ["build.big2"])
        for i in range(2950)
    ]
    changes += [
        change(
            f"notebook.n{i:02}",
            Action.DELETE,
            [Reason(ReasonCode.NOT_IN_CONFIG, f"notebook.n{i:02} is not in the configuration")],
            [],
        )
        for i in range(50)
    ]
    return Plan(Mode.NORMAL, changes, substratus_version="0.0.0-test")


def test_a_10000_resource_plan_fits_keeps_its_reasons_and_has_no_long_line(
    checkout: Checkout, github_server: FakeGitHub
) -> None:
    (checkout.root / "big.json").write_text(plan_text(big_plan()), encoding="utf-8")
    checkout.run("comment", "big.json")
    body = str(the_comment(github_server)["body"])
    assert len(body) <= 65_536
    assert "**Plan: 9,950 to add, 0 to change, 3,000 to destroy. Replacements: 2,950," in body
    flat = body.replace("\n>     ", " ")  # a wrapped paragraph of the warning, on one line
    assert (
        "> **`-/+` 2,950 replaced** because build.big2 changed (spec.contentHash): "
        "`model.llama-7b-tuned-shard-00000`," in flat
    )
    assert "> **`-` 50 destroyed**: not in the configuration: `notebook.n00`," in flat
    listed = re.search(r"`model\.llama-7b-tuned-shard-(\d{5})`, … and ([\d,]+) more\.\n", flat)
    assert listed  # "… and N more" only after listed ones, and they add up
    assert int(listed.group(1)) + 1 + int(listed.group(2).replace(",", "")) == 2950
    assert max(len(line) for line in body.splitlines()) <= MAX_LINE
    assert layout_problems(body) == []
    assert (
        f"_This comment is shortened to fit GitHub's 65,536-character limit.\nThe job summary of "
        f"[CI run 4242]({RUN}) holds the full plan._" in body
    )
    assert "substratus graph big.json --format mermaid` prints it" in body

    summary = checkout.summary.read_text(encoding="utf-8")
    assert len(summary.encode()) <= 1024 * 1024
    assert summary.count("```diff\n") > 500  # field diffs for as many as fit
    assert re.search(r"^\+ +params\.epochs += 5$", summary, flags=re.M)
    assert "one line each, to fit:" in summary and "holds the full plan" not in summary
    assert "`substratus show big.json` prints the full plan." in summary
    assert layout_problems(summary) == []


# -- the example workflow --------------------------------------------------------------------------


def test_the_example_workflow_posts_the_plan_and_also_a_failed_plan(
    checkout: Checkout, github_server: FakeGitHub, tmp_path: Path
) -> None:
    """The plan job's shell steps of examples/ci/github-actions.yml, run by bash as GitHub runs
    them (``bash -e``; after a failure only ``if: always()`` steps), in the checkout."""
    import yaml

    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text())
    steps = [s for s in workflow["jobs"]["plan"]["steps"] if "pip install" not in s.get("run", "")]
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "substratus").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m substratus "$@"\n')
    (shims / "substratus").chmod(0o755)
    env = {**os.environ, "NO_COLOR": "1", **checkout.env}
    env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"

    def job() -> list[tuple[str, int]]:
        ran, failed = [], False
        for step in steps:
            if "run" not in step or (failed and "always()" not in step.get("if", "")):
                continue
            done = subprocess.run(
                ["bash", "-e", "-c", step["run"]], cwd=checkout.root, env=env, timeout=300
            )
            ran.append((step["run"].split()[1], done.returncode))
            failed = failed or done.returncode != 0
        return ran

    assert job() == [("plan.ndjson", 0), ("plan", 0), ("comment", 0)]
    assert "**Plan: 8 to add, 0 to change, 0 to destroy.**" in str(
        the_comment(github_server)["body"]
    )
    checkout.edit("kind: Dataset", "kind: Datasett")
    assert job() == [("plan.ndjson", 0), ("plan", 1), ("comment", 1)]
    body = str(the_comment(github_server)["body"])
    assert "**The plan failed.**" in body and "Unknown kind 'Datasett'" in body
    assert "(**Plan: 8 to add, 0 to change, 0 to destroy.**, planned at commit" in body


def test_no_absolute_path_of_the_runner_is_posted(
    checkout: Checkout, github_server: FakeGitHub
) -> None:
    """Paths in the comment are relative to the repository: a plan run in ``ml/`` names
    ``ml/substratus.yaml``, and no absolute path of the runner (a plan file, a ``-f``) shows."""
    checkout.edit("kind: Dataset", "kind: Datasett")
    ml = Checkout(checkout.root / "ml", checkout.env)
    stream = ml.plan_json(check=1)  # a CI step with working-directory: ml
    assert '"file": "substratus.yaml"' in stream.read_text()
    ml.run("comment", str(stream), check=1)
    body = str(the_comment(github_server)["body"])
    summary = checkout.summary.read_text(encoding="utf-8")
    for text in (body, summary):
        assert "on ml/substratus.yaml:3, kind" in text

    checkout.edit("kind: Datasett", "kind: Dataset")
    checkout.run("plan", "-f", str(checkout.root / "ml"), "--out", str(checkout.root / "p.json"))
    checkout.run("comment", str(checkout.root / "p.json"))
    body = str(the_comment(github_server)["body"])
    assert str(checkout.root) not in body and str(checkout.root) not in checkout.summary.read_text()
    assert "`substratus apply p.json --expect-sha256 " in body
