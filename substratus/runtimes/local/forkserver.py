"""The job fork server: ``python -m substratus.runtimes.local.forkserver --fd N`` (one per apply).

Starting a Python supervisor per job (``python -m …supervise``) cost about 0.1 s of CPU each,
most of it the interpreter starting and importing; this process pays that once. It has the
supervisor's modules imported and, for each request the applying process (``launcher.py``)
sends over the Unix socket ``N``, forks a child that *is* the job's supervisor:
``supervise.supervise`` with the request's arguments, exactly as ``python -m …supervise`` would
run them (the same records, reserve, publication and ``exit_code``; see ``supervise.py``).

A request is a JSON object ``{"job": {...}, "cwd": "...", "env": {...}}`` — ``job``: the
supervisor's arguments (``supervise.arguments``: ``run_dir``, ``partial``, ``final``,
``label``, ``unset``, ``command``), ``env``: its environment — preceded by its length (8 bytes,
big endian), which carries two file descriptors: the run's ``lock`` (an exclusive ``flock``
the applying process took; the child holds it for its whole life, so no second supervisor
starts for the same run) and ``log.txt`` (the child's stdout and stderr). The reply is one
line: ``ok PID START`` (``START``: the child's start time, ``process.ProcessRef``; -1 when it
ended already) or ``error ERRNO MESSAGE`` when no child was made (its working directory cannot
be opened, or ``fork`` failed).

A child starts a new session (it outlives the applying process and this one: ``kill -9`` of
the apply leaves the job running), gets ``/dev/null`` as stdin and the request's working
directory; it parses nothing and copies as little of this process as it can (no garbage
collection, which would touch every shared page). This server exits when the socket is closed
(the applying process ended, however it ended). It reaps its children as they end, so none is
left a zombie and their CPU time counts as this process's (which the applying process collects
when it waits for this one). Nothing from the engine is imported beyond what the supervisor
imports.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
import traceback
from typing import Any

from substratus.runtimes.local import supervise
from substratus.runtimes.local.process import ProcessRef

HEADER = 8  # bytes of the length that precedes a request
FDS = 2  # lock, log
NAME = b"substratus-job"  # /proc/PID/comm of a child (what ps shows)
_WAKE: list[int] = []  # the SIGCHLD wake-up pipe of the server (a child closes it)


def _receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The next request and its file descriptors; None when the socket is closed."""
    head, fds, _flags, _addr = socket.recv_fds(sock, HEADER, FDS)
    if not head:
        return None
    rest = _receive_exactly(sock, HEADER - len(head)) if len(head) < HEADER else b""
    body = _receive_exactly(sock, int.from_bytes(head + (rest or b""), "big"))
    if rest is None or body is None:
        for fd in fds:
            os.close(fd)
        return None
    return json.loads(body), fds


def _child(sock: socket.socket, request: dict[str, Any], cwd: int, fds: list[int]) -> None:
    """Become the job's supervisor; never returns."""
    code = 70  # EX_SOFTWARE: the supervisor itself failed
    try:
        gc.disable()  # a collection would touch (and so copy) every page shared with the server
        signal.set_wakeup_fd(-1)
        for fd in _WAKE:
            os.close(fd)
        sock.close()
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the others are as the server got them
        with contextlib.suppress(OSError), open("/proc/self/comm", "wb") as comm:
            comm.write(NAME)
        lock, log = fds
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.fchdir(cwd)
        os.close(cwd)
        code = supervise.supervise(supervise.arguments(request["job"], lock), request["env"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _fork(sock: socket.socket, request: dict[str, Any], fds: list[int]) -> str:
    """Fork the child of one request; the reply line."""
    try:
        cwd = os.open(request["cwd"], os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        return f"error {exc.errno or 0} {exc.strerror or exc}\n"
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(cwd)
        return f"error {exc.errno or 0} {exc.strerror or exc}\n"
    if pid == 0:
        _child(sock, request, cwd, fds)
    os.close(cwd)
    ref = ProcessRef.of(pid)
    return f"ok {pid} {ref.start if ref is not None else -1}\n"


def _reap() -> None:
    """Collect every child that has ended (their CPU time then counts as this process's)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _answer(sock: socket.socket) -> bool:
    """Answer one request; False when the socket is closed."""
    received = receive(sock)
    if received is None:
        return False
    request, fds = received
    try:
        if len(fds) != FDS:
            reply = f"error 0 expected {FDS} file descriptors, got {len(fds)}\n"
        else:
            reply = _fork(sock, request, fds)
    finally:
        for fd in fds:
            os.close(fd)
    sock.sendall(reply.encode())
    return True


def serve(sock: socket.socket) -> int:
    """Answer requests until the socket is closed, reaping children as they end (woken by
    ``SIGCHLD`` through a wake-up pipe)."""
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    _WAKE[:] = [wake_read, wake_write]
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    gc.freeze()  # what is imported stays in pages the children share, never collected
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(wake_read, select.POLLIN)
    while True:
        for fd, _event in poller.poll():
            if fd == wake_read:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 4096)
                _reap()
            elif not _answer(sock):
                _reap()  # those that ended already count as ours; the others go on
                return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "--fd":
        print("usage: python -m substratus.runtimes.local.forkserver --fd N", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(args[1]))
    try:
        return serve(sock)
    except (KeyboardInterrupt, BrokenPipeError, ConnectionResetError):
        return 0  # the applying process is gone: so is what it could ask for
    except OSError as exc:  # the socket failed: the launcher finds this server gone
        print(f"substratus: the job fork server stopped: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
