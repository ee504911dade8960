"""Running the real CLI at a pseudo-terminal (``pty``), for what only happens at a terminal:
colour, the live progress view, the confirmation prompt.

``at_terminal(args, cwd, env)`` runs ``python -m substratus ARGS`` with stdout and stderr on the
slave side of a new pty (stdin from /dev/null unless ``stdin`` is given) and returns its exit code
and everything it wrote, read from the master side until every writer closed it.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

ESCAPE = "\x1b["


def at_terminal(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120.0
) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "substratus", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"substratus {' '.join(args)} still runs after {timeout:.0f} s")
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=timeout)
    finally:
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")
