"""Starting job supervisors through the fork server (``forkserver.py``), from the applying process.

``launch(job, cwd, env, lock, log)`` asks this process's fork server (started on first use:
``python -P -m substratus.runtimes.local.forkserver``, in its own session, shared by every
``LocalRuntime`` of the process and every thread; it ends when this process does, however it
ends) for a supervisor with the arguments ``job`` (``supervise.arguments``), working directory
``cwd`` and environment ``env``, holding the ``flock``-ed file ``lock`` and writing to ``log``.
It returns the supervisor's ``ProcessRef`` (start -1: it ended already), raises ``OSError`` for
what stopped it from starting (a working directory that cannot be opened, ``fork`` failing),
and returns None when the fork server was lost with the request unanswered: whether the
supervisor was started is then unknown, and the caller finds out through the run's lock (a
supervisor that started holds it). A fork server found gone before a request is sent is
replaced.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from substratus.runtimes.local.process import ProcessRef

SERVER = "substratus.runtimes.local.forkserver"
HEADER = 8  # forkserver.HEADER (not imported: that module imports the supervisor)


class _Server:
    """One running fork server: its process and our end of its socket."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", SERVER, "--fd", str(theirs.fileno())],
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.replies = ours.makefile("rb")
        self.owner = os.getpid()

    def send(self, payload: bytes, fds: Sequence[int]) -> None:
        head = len(payload).to_bytes(HEADER, "big")
        sent = socket.send_fds(self.sock, [head], list(fds))
        if sent < HEADER:
            self.sock.sendall(head[sent:])
        self.sock.sendall(payload)

    def reply(self) -> str | None:
        line = self.replies.readline()
        return line.decode() if line.endswith(b"\n") else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.replies.close()
            self.sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self.process.wait(timeout=5.0)


_lock = threading.Lock()
_server: _Server | None = None


def _running() -> _Server:
    """The fork server of this process, started or replaced when needed (under ``_lock``)."""
    global _server
    if _server is not None and (_server.owner != os.getpid() or _server.process.poll() is not None):
        if _server.owner == os.getpid():
            _server.close()
        _server = None
    if _server is None:
        _server = _Server()
    return _server


def _parse(line: str) -> ProcessRef:
    word, _, rest = line.strip().partition(" ")
    if word == "ok":
        pid, start = rest.split()
        return ProcessRef(int(pid), int(start))
    number, _, message = rest.partition(" ")
    raise OSError(int(number) or None, message or "the fork server refused the job")


def launch(
    job: Mapping[str, Any], cwd: Path, env: Mapping[str, str], lock: int, log: int
) -> ProcessRef | None:
    """Start a supervisor (see the module docstring)."""
    global _server
    payload = json.dumps({"job": dict(job), "cwd": str(cwd), "env": dict(env)}).encode()
    with _lock:
        server = _running()
        try:
            server.send(payload, (lock, log))
        except OSError:  # gone before it read the request: nothing was started
            server.close()
            _server = server = _Server()
            server.send(payload, (lock, log))
        try:
            line = server.reply()
        except OSError:
            line = None
        if line is None:
            server.close()
            _server = None
            return None
    return _parse(line)


def server_pid() -> int | None:
    """The pid of this process's fork server while it runs (for diagnostics and tests)."""
    with _lock:
        server = _server
        if server is None or server.owner != os.getpid() or server.process.poll() is not None:
            return None
        return server.process.pid


@atexit.register
def _shutdown() -> None:
    """Close the fork server's socket at exit (it ends; the supervisors it made go on)."""
    global _server
    with _lock:
        if _server is not None and _server.owner == os.getpid():
            _server.close()
        _server = None
