"""The ``lock`` of a job run: whether it is held, and waiting for it to be let go.

A job run's supervisor (the job host's thread for it, or ``python -m …supervise``) holds an
exclusive ``flock`` on ``RunFiles.lock`` from before it starts until after it wrote
``exit_code``; the lock goes with it however it ends (``kill -9`` included). So "its lock is
held" is "the run is being supervised", and its release is the run's end — which
``LockWatch`` waits for without polling: a thread blocked in ``flock`` for a shared lock, which
the kernel wakes when the holder lets go. No engine imports.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path


def held(lock: Path) -> bool:
    """Whether another open file holds ``lock`` now (taking and letting go of a shared lock on
    it for a moment); an absent lock file is not held."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also lets go of the shared lock
    return False


class LockWatch:
    """Waits for ``lock`` to be let go (the run ended, or its supervisor was killed): a daemon
    thread blocks in ``flock`` until the kernel gives it a shared lock, lets go of it at once
    and sets an event. A lock file that cannot be opened counts as let go."""

    def __init__(self, lock: Path) -> None:
        self._released = threading.Event()
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._released.set()
            return
        threading.Thread(
            target=self._watch, args=(fd,), name="substratus-run-lock", daemon=True
        ).start()

    def _watch(self, fd: int) -> None:
        try:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)
            self._released.set()

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: for ever); whether the lock was let go."""
        return self._released.wait(timeout)
