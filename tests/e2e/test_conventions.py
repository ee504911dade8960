"""The conventions users bring from Terraform, kubectl and the shell (issue #16), through the
real CLI: colour, confirmation, completion, clean machine output, addresses, messages,
workspaces and the README's figures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import TEST_ENV, Project, kill_leftovers
from tests.e2e.counting import PIPELINE, make_pipeline, runs
from tests.e2e.terminal import ESCAPE, at_terminal

JOBS = "---\n".join(PIPELINE.split("---\n")[:2])  # the Dataset and the trained Model


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Project]:
    """The counting Dataset → Model pipeline (no server); runs counted in ``tmp_path/runs.log``."""
    p = Project(make_pipeline(tmp_path / "jobs", JOBS))
    os.environ["RUNS_LOG"] = str(tmp_path / "runs.log")
    yield p
    if p.state_file.exists():
        p.run("destroy", "--auto-approve", "--no-lock", check=None, timeout=60)
    kill_leftovers(tmp_path)


def _env(**extra: str) -> dict[str, str]:
    """The tests' environment without NO_COLOR (which the e2e tests set), plus ``extra``."""
    env = {**os.environ, **TEST_ENV, **extra}
    if "NO_COLOR" not in extra:
        env.pop("NO_COLOR", None)
    return env


def _terminal_outputs(p: Project, flags: list[str], env: dict[str, str]) -> dict[str, str]:
    """What plan, apply (with live progress) and a failing command write at a terminal."""
    seen = {}
    code, seen["plan"] = at_terminal(["plan", "--replace", "model.trained", *flags], p.dir, env)
    assert code == 0, seen["plan"]
    code, seen["apply"] = at_terminal(
        ["apply", "--auto-approve", "--replace", "model.trained", *flags], p.dir, env
    )
    assert code == 0, seen["apply"]
    code, seen["error"] = at_terminal(["plan", "-f", "no-such-dir", *flags], p.dir, env)
    assert code == 1 and "Error" in seen["error"], seen["error"]
    return seen


def test_colour_only_at_a_terminal_and_never_when_refused(jobs: Project) -> None:
    jobs.run("apply", "--auto-approve")
    coloured = _terminal_outputs(jobs, [], _env())
    for command, out in coloured.items():  # the test can see colour
        assert ESCAPE in out, f"{command}: {out!r}"
    for flags, env in (
        (["--no-color"], _env()),
        ([], _env(NO_COLOR="1")),
    ):
        plain = _terminal_outputs(jobs, flags, env)
        for command, out in plain.items():
            assert ESCAPE not in out, f"{command} {flags} {env.get('NO_COLOR')}: {out!r}"
        # the progress as plain lines
        assert "model.trained: Replacement complete after" in plain["apply"]
    assert runs(Path(os.environ["RUNS_LOG"]))["trained"] == 4
    # not at a terminal: no colour even when allowed
    piped = jobs.run("plan", "-f", "no-such-dir", check=1, env={"NO_COLOR": ""})
    assert ESCAPE not in piped.stdout + piped.stderr
