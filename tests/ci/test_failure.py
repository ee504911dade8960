"""Reading ``plan --json``'s stream and wording a failed plan (``substratus.ci.failure``); the
comment itself is tested through the CLI in test_comment_cli.py."""

from __future__ import annotations

import json
from collections.abc import Mapping

from substratus.ci.failure import PlanOutcome, failed_markdown, outdated_note, read_outcome
from substratus.engine.diagnostic import Diagnostic
from tests.render.plans import layout_problems


def stream(*events: Mapping[str, object]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def test_the_stream_says_whether_the_plan_failed() -> None:
    version = {"type": "version", "substratus_version": "0.1.0"}
    error = {"type": "diagnostic", "severity": "error", "summary": "Bad", "detail": "d"}
    warning = {**error, "severity": "warning", "summary": "Meh"}
    done = {"type": "change_summary", "add": 1}
    saved = {"type": "plan_saved", "path": "out/p.json", "sha256": "0" * 64}

    ok = read_outcome(stream(version, warning, done, saved))
    assert ok is not None and not ok.failed and ok.plan_file == "out/p.json"
    failed = read_outcome(stream(version, warning, error))
    assert failed is not None and failed.failed and [d.summary for d in failed.errors] == ["Bad"]
    stopped = read_outcome(stream(version))
    assert stopped is not None and stopped.failed and not stopped.errors
    never = read_outcome("")
    assert never is not None and never.failed  # never started
    assert read_outcome('{"format_version": "1.0"}\n{"x": 1}') is None  # not a stream
    assert read_outcome("not json") is None


def test_an_outdated_plan_is_named_once_and_carried_over() -> None:
    plan = "<!-- m -->\n## t\n\n**Plan: 3 to add, 0 to change, 1 to destroy.**\n\n"
    plan += "Planned at commit [`abcdef012345`](https://x/commit/abc)\n· [CI run 1](u)\n"
    note = outdated_note(plan)
    assert note.startswith(
        "The plan this comment showed before (**Plan: 3 to add, 0 to change, 1 to destroy.**, "
        "planned at commit `abcdef012345`) is outdated"
    )
    body = failed_markdown("t", PlanOutcome(), run=None, previous=plan, about="a", budget=9999)
    again = failed_markdown("t", PlanOutcome(), run=None, previous=body, about="a", budget=9999)
    assert note in body and again.count(note) == 1
    assert "the log of the CI step says why" in body
    assert outdated_note(None) == "" and outdated_note("## no plan here") == ""


def test_errors_stay_inside_their_code_block_and_are_cut_to_the_budget() -> None:
    hostile = Diagnostic.error("Boom ```", "</details> @octo-org/team\n```\n<script>")
    many = (hostile, *(Diagnostic.error(f"Error {i}", "x" * 200) for i in range(500)))
    body = failed_markdown("t", PlanOutcome(many), run=None, previous=None, about="a", budget=8000)
    assert len(body) <= 8000 and layout_problems(body) == []
    assert "\n````text\nError: Boom ```" in body  # a fence longer than any run inside
    kept = body.count("Error: ")
    assert f"… and {501 - kept:,} more errors; the run's log has all." in body
