"""Help that reads well and durations in one format (issue #16), through the real CLI.

Every command's ``--help`` (a real ``python -m substratus`` process) names placeholders by
words, never by a ``<type>``; each option that takes a value or is a ``--x/--no-x`` switch names
its default, and each option read from a ``SUBSTRATUS_*`` variable names it. Which commands and
options exist is read from the app itself, so a new one is checked too.

Every duration flag takes one format (``90``, ``30s``, ``20m``, ``1h``, ``1h30m``) and refuses
anything else with one error naming the flag, exit 1, before anything runs (runs are counted:
each job appends a line to ``$RUNS_LOG``, outside its content directory).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from substratus.cli.app import build_app
from substratus.cli.options import parse_duration
from substratus.engine.diagnostic import DiagnosticError
from tests.e2e.conftest import TEST_ENV
from tests.e2e.counting import PIPELINE, runs, write_app

BOUND = 120.0  # an upper bound for a loaded machine, never an expectation
TYPE_PLACEHOLDER = re.compile(r"<[a-z][\w\[\]|,. ]*>")


def commands() -> dict[str, Any]:
    """Every command of the app (a click command of typer's) by its command line
    (``state rm``), groups left out."""
    found: dict[str, Any] = {}

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, (*path, name))
        else:
            found[" ".join(path)] = cmd

    walk(typer.main.get_command(build_app()), ())
    return found


COMMANDS = commands()


def cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "substratus", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BOUND,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **TEST_ENV, **(env or {})},
    )


def option_entries(helptext: str) -> dict[str, str]:
    """Each option's entry of a help text (its lines joined), keyed by each of its flags."""
    entries: dict[str, list[str]] = {}
    current: list[str] = []
    for line in helptext.split("Options:", 1)[1].splitlines():
        if re.match(r"  -", line):
            current = [line.strip()]
            for flag in re.findall(r"-[-\w]+", line.strip().split("  ")[0]):
                entries[flag] = current
        elif current and line.strip():
            current.append(line.strip())
    return {flag: " ".join(lines) for flag, lines in entries.items()}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_names_words_defaults_and_variables(name: str, tmp_path: Path) -> None:
    out = cli(tmp_path, *name.split(), "--help")
    assert out.returncode == 0, out.stderr
    assert not TYPE_PLACEHOLDER.search(out.stdout), out.stdout
    entries = option_entries(out.stdout)
    for param in COMMANDS[name].params:
        if param.param_type_name != "option" or param.name == "help":
            continue
        entry = entries[param.opts[0]]
        if param.envvar:
            assert f"env var: {param.envvar}" in entry, entry
        if not param.is_flag or param.secondary_opts:
            assert "default" in entry, entry
        if not param.is_flag:
            placeholder = entry.split()[len(param.opts)]  # the word after the flags
            assert placeholder == param.metavar, entry


def test_an_argument_is_a_word(tmp_path: Path) -> None:
    out = cli(tmp_path, "state", "rm", "--help")
    assert "{ADDR}..." in out.stdout and "  ADDR...  Addresses to forget." in out.stdout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("1.5", 1.5),
        ("30s", 30.0),
        ("20m", 1200.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        (" 2M ", 120.0),
        ("0", 0.0),
    ],
)
def test_a_duration_is_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text, "--timeout") == seconds


@pytest.mark.parametrize("text", ["abc", "-1", "nan", "inf", "", "1x", "m", "1h 30m", "30s5"])
def test_anything_else_is_no_duration(text: str) -> None:
    with pytest.raises(DiagnosticError) as info:
        parse_duration(text, "--timeout")
    assert "--timeout" in str(info.value)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """One counted Dataset job: what ``apply`` runs once, quickly."""
    root = tmp_path / "project"
    write_app(root / "app")
    (root / "substratus.yaml").write_text(PIPELINE.split("---\n")[0])
    return root


@pytest.mark.parametrize("flag", ["--timeout", "--lock-timeout"])
@pytest.mark.parametrize("value", ["30s", "20m", "1h", "90"])
def test_apply_takes_each_duration(project: Path, flag: str, value: str) -> None:
    log = project.parent / "runs.log"
    out = cli(project, "apply", "--auto-approve", flag, value, env={"RUNS_LOG": str(log)})
    assert out.returncode == 0, out.stderr
    assert runs(log) == {"data": 1}


def one_error(out: subprocess.CompletedProcess[str], first: str) -> None:
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.count("Error:") == 1 and first in out.stderr, out.stderr
    assert "Traceback" not in out.stdout + out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["apply", "--auto-approve", "--timeout"],
        ["apply", "--auto-approve", "--lock-timeout"],
        ["plan", "--lock-timeout"],
        ["state", "rm", "dataset.data", "--lock-timeout"],
        ["notebook", "--timeout"],
    ],
    ids=" ".join,
)
@pytest.mark.parametrize("value", ["abc", "-1"])
def test_a_bad_duration_is_one_error_naming_the_flag(
    project: Path, args: list[str], value: str
) -> None:
    log = project.parent / "runs.log"
    out = cli(project, *args, value, env={"RUNS_LOG": str(log)})
    one_error(out, f"Invalid {args[-1]} {value}")
    assert runs(log) == {}
    assert not (project / ".substratus" / "state" / "default.lock").exists()


def test_the_notebook_timeout_takes_a_duration(project: Path) -> None:
    """Its duration is read first: two notebooks asked for is then the one error."""
    out = cli(project, "notebook", "one", "--from", "model.two", "--timeout", "1h30m")
    one_error(out, "Give one notebook")


def test_a_bad_lock_timeout_variable_names_the_flag(project: Path) -> None:
    log = project.parent / "runs.log"
    env = {"RUNS_LOG": str(log), "SUBSTRATUS_LOCK_TIMEOUT": "soon"}
    one_error(cli(project, "apply", "--auto-approve", env=env), "Invalid --lock-timeout soon")
    assert runs(log) == {}
