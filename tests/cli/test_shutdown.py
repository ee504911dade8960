"""The CLI ends without collecting its objects: ``substratus.cli.main`` freezes the garbage
collector on its way out, whatever the command's outcome, so the interpreter's shutdown skips
them (issue #14: the shutdown took a quarter of ``validate``). The command's exit code is
unchanged. Checked in a fresh interpreter, as the console script runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_MAIN = """
import gc, sys
sys.argv = ["substratus", *sys.argv[1:]]
from substratus.cli import main
try:
    main()
except SystemExit as exc:
    print("frozen", gc.get_freeze_count(), file=sys.stderr)
    raise
print("frozen", gc.get_freeze_count(), file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("args", "code"),
    [(["version"], 0), (["plan", "--help"], 0), (["validate"], 1), (["--no-such-flag"], 1)],
)
def test_main_freezes_the_collector_and_keeps_the_exit_code(
    tmp_path: Path, args: list[str], code: int
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", RUN_MAIN, *args],
        cwd=tmp_path,  # no configuration here: validate fails
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == code, done.stdout + done.stderr
    frozen = [line for line in done.stderr.splitlines() if line.startswith("frozen ")]
    assert len(frozen) == 1 and int(frozen[0].split()[1]) > 0, done.stderr


COUNT_COLLECTIONS = """
import gc, sys
sys.argv = ["substratus", *sys.argv[1:]]
from substratus.cli import main
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info))
try:
    main()
finally:
    print("collections", len(collections), file=sys.stderr)
"""


def test_a_brief_command_collects_nothing_from_its_first_import_on(tmp_path: Path) -> None:
    """The collector is tuned before ``main`` imports typer and the app (their imports alone
    made 31 collections of a ``validate``); a ``BRIEF`` command then collects nothing."""
    done = subprocess.run(
        [sys.executable, "-c", COUNT_COLLECTIONS, "validate", "-f", "examples/quickstart"],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The configuration is valid" in done.stdout
    assert "collections 0" in done.stderr.splitlines(), done.stderr
