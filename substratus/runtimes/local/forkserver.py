"""The job fork server: ``python -m substratus.runtimes.local.forkserver --fd N`` (one per apply).

Starting a Python supervisor per job (``python -m …supervise``) costs about 0.1 s of CPU each,
most of it the interpreter starting and importing; this process pays that once. It has the
supervisor's modules imported already and, for each request the applying process
(``launcher.Launcher``) sends over the Unix socket ``N``, forks a child that *is* the job's
supervisor: ``supervise.supervise`` with the request's arguments, exactly as
``python -m …supervise`` would run them (the same records, reserve, publication and
``exit_code``; see ``supervise.py``).

A request is a JSON object ``{"argv": [...], "cwd": "...", "env": {...}}`` (``argv``: the
supervisor's arguments, ``env``: its whole environment) preceded by its length (8 bytes, big
endian) that carries two file descriptors: the run's ``lock`` (an exclusive ``flock`` taken by
the applying process; the child holds it for its whole life, so no second supervisor starts for
the same run) and ``log.txt`` (the child's stdout and stderr). The reply is one line:
``ok PID START`` (``START``: the child's start time, ``process.ProcessRef``; -1 when it ended
already) or ``error ERRNO MESSAGE`` when no child was made (its working directory cannot be
opened, or ``fork`` failed).

A child starts a new session (it outlives the applying process and this one: ``kill -9`` of the
apply leaves the job running), gets the default signal dispositions back, ``/dev/null`` as
stdin, and the request's working directory and environment. This server exits when the socket
is closed (the applying process ended, however it ended); children are reaped by the kernel
(``SIGCHLD`` ignored here), so none is left a zombie. Nothing from the engine is imported
beyond what the supervisor imports.
"""

from __future__ import annotations

import contextlib
import json
import os
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
        sock.close()
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
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
        os.environ.clear()
        os.environ.update(request["env"])
        args = supervise.parse([*request["argv"], "--lock-fd", str(lock)])
        code = supervise.supervise(args)
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


def serve(sock: socket.socket) -> int:
    """Answer requests until the socket is closed."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        received = receive(sock)
        if received is None:
            return 0
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "--fd":
        print("usage: python -m substratus.runtimes.local.forkserver --fd N", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(args[1]))
    try:
        return serve(sock)
    except (KeyboardInterrupt, BrokenPipeError, ConnectionResetError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
