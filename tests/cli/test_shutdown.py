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
