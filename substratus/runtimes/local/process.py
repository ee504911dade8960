"""Processes of the local runtime: identity that survives pid reuse, liveness, stopping, ports.

A process is identified by ``(pid, start)`` where ``start`` is field 22 of ``/proc/<pid>/stat``
(start time in clock ticks since boot): a pid whose start time differs is a different process,
and is never signalled. Zombies count as dead. Stopping signals the whole process group of the
process (every workload starts a new session, so a job's command stops with its supervisor).
Waiting for a process to end (``ExitWatch``, ``stop``) is woken by the kernel through a pidfd
when it exits, not by polling.
HTTP probes go straight to 127.0.0.1 without proxies. No engine imports: the supervisor
process uses this module too.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        """The identity of the running process ``pid`` (None when there is none)."""
        start = start_time(pid)
        return None if start is None else cls(pid, start)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ProcessRef | None:
        if not data:
            return None
        pid, start = data.get("pid"), data.get("pid_start", data.get("start"))
        if isinstance(pid, int) and isinstance(start, int):
            return cls(pid, start)
        return None

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "pid_start": self.start}

    def alive(self) -> bool:
        return start_time(self.pid) == self.start


def _stat_fields(pid: int) -> list[str] | None:
    try:  # unbuffered: one open, one read (the whole file is far below 4 KiB)
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(fd, 4096).decode("ascii", errors="replace")
        finally:
            os.close(fd)
    except OSError:
        return None
    # Field 2 (comm) is parenthesised and may contain spaces: split after the last ')'.
    return text[text.rfind(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, or None when the process does not exist or is a zombie."""
    if pid <= 0:
        return None
    fields = _stat_fields(pid)
    if not fields or len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


class ExitWatch:
    """Waits for a process to end (ours or not) without polling: through a pidfd, which the
    kernel makes readable when the process exits. Use as a context manager (it closes the
    pidfd). Where pidfds are not available it checks ``alive`` every ``FALLBACK_POLL`` s."""

    FALLBACK_POLL = 0.01

    def __init__(self, ref: ProcessRef) -> None:
        self.ref = ref
        self._fd: int | None = None
        self._ended = False
        try:
            self._fd = os.pidfd_open(ref.pid)
        except ProcessLookupError:
            self._ended = True
        except (OSError, AttributeError):  # no pidfd here: fall back to checking
            self._fd = None
        if not self._ended and not ref.alive():  # gone already, or the pid is another's now
            self._ended = True

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: for ever); whether the process has ended."""
        if self._ended:
            return True
        if self._fd is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self.ref.alive():
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(self.FALLBACK_POLL)
        else:
            poller = select.poll()
            poller.register(self._fd, select.POLLIN)
            if not poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000))):
                return False
        self._ended = True
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ExitWatch:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is our exited child (no-op otherwise)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def signal_group(ref: ProcessRef, sig: int) -> bool:
    """Send ``sig`` to the process group of ``ref`` if ``ref`` is still that process."""
    if not ref.alive():
        return False
    try:
        group = os.getpgid(ref.pid)
        if group == os.getpgrp():  # never signal our own group
            os.kill(ref.pid, sig)
        else:
            os.killpg(group, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        with contextlib.suppress(OSError):
            os.kill(ref.pid, sig)
    return True


def stop(ref: ProcessRef, grace: float = 10.0) -> None:
    """SIGTERM the group, wait up to ``grace`` seconds for ``ref`` to end (woken by its exit),
    then SIGKILL the group and wait up to 5 s more. Gone already is fine."""
    if not signal_group(ref, signal.SIGTERM):
        return
    with ExitWatch(ref) as watch:
        if not watch.wait(grace):
            signal_group(ref, signal.SIGKILL)
            watch.wait(5.0)
    reap(ref.pid)


_issued: set[int] = set()
_issued_lock = threading.Lock()


def claim_port(port: int) -> None:
    """Keep ``free_port`` from handing out ``port`` in this process (a server is moving back
    onto it after its previous process stops)."""
    with _issued_lock:
        _issued.add(port)


def port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:PORT now: nothing listens there (bound with
    SO_REUSEADDR, as HTTP servers bind, so connections closing on it do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (never the same twice in one process,
    nor one claimed with ``claim_port``, so parallel starts do not race for one port)."""
    with _issued_lock:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port: int = sock.getsockname()[1]
            if port not in _issued:
                _issued.add(port)
                return port


def http_status(port: int, timeout: float = 2.0) -> int | None:
    """The status of ``GET http://127.0.0.1:PORT/``, or None when nothing answers."""
    import http.client  # here: the job host does not need it (nor ssl, email)

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
