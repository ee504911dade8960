"""The start-up import budget of the CLI: ``substratus --help``, ``version`` and ``validate``
import nothing heavy until a command needs it (issue #14: start-up under 0.15 s).

The budget is a set of modules that must not be imported, checked in a fresh interpreter with
``python -X importtime`` (never a wall-clock time: that would fail under load).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Modules (and packages: their submodules too) that start-up must not import.
HEAVY = (
    "deepdiff",
    "numpy",
    "networkx",
    "kubernetes",
    "google",
    "rich",
    "yaml",
    "substratus.engine.operation",
    "substratus.engine.planner",
    "substratus.engine.digest",
    "substratus.engine.graph",
    "substratus.engine.plan",
    "substratus.engine.config",
    "substratus.engine.statefile",
    "substratus.engine.apply",
    "substratus.runtimes",
    "substratus.state",
    "substratus.gcs",
    "substratus.ci",
    "substratus.notebook",
)
# Validating a configuration loads it (YAML, the spec models) and asks the runtime to check it,
# but needs neither the planner nor the state.
# The command modules a run of one command does not import: the app is built with the command
# it names alone (``substratus.cli.app.build_app``).
OTHER_COMMANDS = (
    "substratus.cli.apply",
    "substratus.cli.comment",
    "substratus.cli.graph",
    "substratus.cli.logs",
    "substratus.cli.notebook",
    "substratus.cli.output",
    "substratus.cli.schema",
    "substratus.cli.show",
    "substratus.cli.state",
    "substratus.cli.workspace",
)
HEAVY_FOR_VALIDATE = (
    *OTHER_COMMANDS,
    "substratus.cli.plan",
    # the plan, the state's models and the plan's rendering: a diagnostic is printed without
    # them (``engine.render_diagnostic``)
    "substratus.engine.plan",
    "substratus.engine.statefile",
    "substratus.engine.render",
    "substratus.engine.estimate",
    "deepdiff",
    "numpy",
    "networkx",
    "kubernetes",
    "google",
    "rich",
    "substratus.engine.operation",
    "substratus.engine.planner",
    "substratus.engine.digest",
    "substratus.engine.graph",
    "substratus.engine.apply",
    "substratus.runtimes.kubernetes",
    # the local runtime checks a configuration without its jobs, servers, builds or logs
    "substratus.runtimes.local.job",
    "substratus.runtimes.local.launcher",
    "substratus.runtimes.local.server",
    "substratus.runtimes.local.refresh",
    "substratus.runtimes.local.build",
    "substratus.runtimes.local.logs",
    "substratus.runtimes.local.session",
    "substratus.state",
    "substratus.gcs",
    "substratus.ci",
)


def imported(*args: str) -> set[str]:
    """The modules ``python -X importtime ARGS`` imports (it must exit 0)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "substratus.cli" in names, done.stderr[-2000:]
    return names


def over_budget(names: set[str], heavy: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == h or n.startswith(h + ".") for h in heavy))


def test_importing_the_app_imports_nothing_heavy() -> None:
    names = imported("-c", "import substratus.cli.app")
    assert over_budget(names, HEAVY) == []


@pytest.mark.parametrize("command", [["--help"], ["version"], ["plan", "--help"]])
def test_help_and_version_import_nothing_heavy(command: list[str]) -> None:
    names = imported("-m", "substratus", *command)
    assert over_budget(names, HEAVY) == []


def test_a_command_imports_no_other_command() -> None:
    names = imported("-m", "substratus", "plan", "--help")
    assert "substratus.cli.plan" in names
    assert over_budget(names, OTHER_COMMANDS) == []


def test_version_imports_not_even_the_command_line_parser() -> None:
    names = imported("-m", "substratus", "version")
    # nor the code cache, whose dataclasses import costs more than the answer (about 10 ms)
    budget = ("typer", "pydantic", "substratus.cli.app", "substratus.cli.codecache", *HEAVY)
    assert over_budget(names, budget) == []


def test_validate_imports_neither_the_planner_nor_the_state() -> None:
    names = imported("-m", "substratus", "validate", "-f", "examples/quickstart")
    assert "substratus.engine.config" in names  # the budget checks a real validation
    assert over_budget(names, HEAVY_FOR_VALIDATE) == []


def test_an_apply_without_a_terminal_imports_no_rich(tmp_path: Path) -> None:
    """Plain progress lines (an apply in CI or a pipe) are written without rich, and an apply
    that saves no plan loads no plan document models; the job ran."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "README").write_text("a job\n", encoding="utf-8")
    runs = tmp_path / "runs.txt"  # outside the job's content directory
    (tmp_path / "data.yaml").write_text(
        "kind: Dataset\nname: data\nspec:\n  container:\n    local: {path: ./app}\n"
        f'    command: ["sh", "-c", "echo ran >> {runs}"]\n',
        encoding="utf-8",
    )
    names = imported("-m", "substratus", "apply", "-f", str(tmp_path), "--auto-approve")
    assert runs.read_text(encoding="utf-8") == "ran\n"
    assert "substratus.cli.progress" in names
    assert over_budget(names, ("rich", "substratus.engine.plan_document")) == []
