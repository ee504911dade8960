"""Handing jobs to the job host (``host.py``), from the applying process.

``launch(job, cwd, env, lock, log)`` asks this process's job host to supervise a run with the
arguments ``job`` (``supervise.arguments``), working directory ``cwd`` and environment ``env``,
holding the ``flock``-ed file ``lock`` and writing to ``log``. It returns the supervisor's
``ProcessRef`` (the host, or on more than one node the ``supervise`` process it started; start
-1: it ended already), raises ``OSError`` for what stopped it from starting, and returns None
when the host was lost with the request unanswered: whether the run was started is then
unknown, and the caller finds out through the run's lock (a supervisor that started holds it).
A host found gone before a request is sent is replaced. The host says when each run it
supervises in a thread has ended (after it let go of the run's lock): ``end_of(run_dir)`` is
set then — or when the host is lost — so this process learns of a job's end without a thread
waiting on its lock (``runlock.LockWatch``, for a run it did not start itself).

The host is started on first use or by ``prestart``: ``python -I`` running ``host.main`` from
the same ``substratus`` as this process, in its own session. One is shared by every
``LocalRuntime`` of the process and every thread; it takes no more requests once this process
ends, however it ends, and exits when the runs it supervises have ended. Requests from several
threads are pipelined: each waits only for its own reply.
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
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from substratus.runtimes.local.process import ProcessRef

HEADER = 8  # host.HEADER (not imported: that module imports the supervisor)
# The job host imports the same substratus as this process, whatever PYTHONPATH says.
ROOT = str(Path(__file__).resolve().parents[3])
BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from substratus.runtimes.local.host import main; sys.exit(main(sys.argv[2:]))"
)


class _Reply:
    """The reply line to one request, once the reader has it (None: the server was lost)."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.line: str | None = None

    def set(self, line: str | None) -> None:
        self.line = line
        self.ready.set()


class _Server:
    """One running job host: its process, our end of its socket, and a thread that hands
    each reply line to the request waiting for it (replies come in the order of requests, so
    requests are pipelined: none waits for another's to be started). Told that this process
    has no more requests (``close``), the host answers ``runs N``: the runs it still
    supervises."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT, ROOT, "--fd", str(theirs.fileno())],
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # it outlives us: it must not hold our output
                stderr=subprocess.DEVNULL,  # open (a run's problems go into its log)
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.owner = os.getpid()
        self.waiting: deque[_Reply] = deque()
        self.left: int | None = None  # the runs still supervised when we closed (``close``)
        self.ends: dict[str, threading.Event] = {}  # run directory -> set when it ended
        self.taken: set[str] = set()  # those of ``ends`` that ``end_of`` gave out
        self.mutex = threading.Lock()
        self.reader = threading.Thread(target=self._read, name="substratus-host", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError), self.sock.makefile("rb") as replies:
            for line in replies:
                if not line.endswith(b"\n"):
                    break
                if line.startswith(b"end "):
                    self._ended(json.loads(line[4:]))
                    continue
                with self.mutex:
                    reply = self.waiting.popleft() if self.waiting else None
                if reply is not None:
                    reply.set(line.decode())
                elif line.startswith(b"runs "):
                    self.left = int(line.split()[1])
        with self.mutex:
            lost, self.waiting = list(self.waiting), deque()
            ends, self.ends, self.taken = list(self.ends.values()), {}, set()
        for reply in lost:
            reply.set(None)
        for event in ends:  # whoever waits finds out from the run's files
            event.set()

    def _ended(self, run_dir: str) -> None:
        """Set the run's event; forget it once ``end_of`` gave it out (else it does)."""
        with self.mutex:
            event = self.ends.get(run_dir)
            if event is not None:
                event.set()
                if run_dir in self.taken:
                    self.taken.discard(run_dir)
                    del self.ends[run_dir]

    def take(self, run_dir: str) -> threading.Event | None:
        """The run's event (``end_of``), forgotten here once it is set."""
        with self.mutex:
            event = self.ends.get(run_dir)
            if event is not None and event.is_set():
                del self.ends[run_dir]
            elif event is not None:
                self.taken.add(run_dir)
            return event

    def send(self, payload: bytes, fds: Sequence[int], run_dir: str | None) -> _Reply:
        """Send one request (the caller holds ``_lock``); its reply to wait for. ``run_dir``:
        the run whose end the host will say (one it supervises in a thread)."""
        reply = _Reply()
        with self.mutex:
            self.waiting.append(reply)
            if run_dir is not None:
                self.ends[run_dir] = threading.Event()
                self.taken.discard(run_dir)
        head = len(payload).to_bytes(HEADER, "big")
        sent = socket.send_fds(self.sock, [head], list(fds))
        if sent < HEADER:
            self.sock.sendall(head[sent:])
        self.sock.sendall(payload)
        return reply

    def close(self) -> None:
        """Send no more requests. When the host supervises nothing any more it exits, and is
        waited for (its CPU time then counts as this process's children's); otherwise it goes
        on with its runs, and this process does not wait."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)  # the host sees EOF and answers ``runs N``
        if self.reader is not threading.current_thread():
            self.reader.join(timeout=5.0)
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.left == 0 or self.process.poll() is not None:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self.process.wait(timeout=5.0)


_lock = threading.Lock()  # held while a request is sent, and while the server is replaced
_server: _Server | None = None


def _running() -> _Server:
    """The job host of this process, started or replaced when needed (under ``_lock``)."""
    global _server
    if _server is not None and (_server.owner != os.getpid() or _server.process.poll() is not None):
        if _server.owner == os.getpid():
            _server.close()
        _server = None
    if _server is None:
        _server = _Server()
    return _server


def prestart() -> None:
    """Start the job host now, so that it has started by the time a job needs it."""
    with _lock:
        _running()


def _parse(line: str) -> ProcessRef:
    word, _, rest = line.strip().partition(" ")
    if word == "ok":
        pid, start = rest.split()
        return ProcessRef(int(pid), int(start))
    number, _, message = rest.partition(" ")
    raise OSError(int(number) or None, message or "the job host refused the job")


def launch(
    job: Mapping[str, Any], cwd: Path, env: Mapping[str, str], lock: int, log: int
) -> ProcessRef | None:
    """Start a supervisor (see the module docstring)."""
    global _server
    where = os.path.abspath(cwd)  # the host's own working directory is /
    payload = json.dumps({"job": dict(job), "cwd": where, "env": dict(env)}).encode()
    hosted = str(job["run_dir"]) if int(job.get("nodes", 1)) == 1 else None
    with _lock:
        server = _running()
        try:
            reply = server.send(payload, (lock, log), hosted)
        except OSError:  # gone before it read the request: nothing was started
            server.close()
            _server = server = _Server()
            reply = server.send(payload, (lock, log), hosted)
    reply.ready.wait()
    if reply.line is None:
        return None
    return _parse(reply.line)


def end_of(run_dir: str) -> threading.Event | None:
    """Take the event set when the run in ``run_dir``, which this process handed to its job
    host, has ended (or the host was lost); None when there is none to take (not started
    here, not in a thread of the host, taken already, or its host replaced since)."""
    with _lock:
        server = _server
    return None if server is None else server.take(run_dir)


def server_pid() -> int | None:
    """The pid of this process's job host while it runs (for diagnostics and tests)."""
    with _lock:
        server = _server
        if server is None or server.owner != os.getpid() or server.process.poll() is not None:
            return None
        return server.process.pid


@atexit.register
def _shutdown() -> None:
    """Close the job host's socket at exit (it ends once the runs it supervises have)."""
    global _server
    with _lock:
        if _server is not None and _server.owner == os.getpid():
            _server.close()
        _server = None
