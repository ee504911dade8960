"""The job host: ``python -m substratus.runtimes.local.host --fd N`` (one per applying process).

It supervises the jobs the applying process (``launcher.py``) hands it over the Unix socket
``N``, each in a thread of its own, doing for each what ``python -m …supervise`` does for one
(``supervise.supervise_with``: the reserve, the records, attempts and retries, publication and
``exit_code``). Starting a Python supervisor per job cost about 8 ms of CPU per job (a fork of
a Python process and its copy-on-write faults, or an interpreter start); a thread costs a
fraction of that. A job on more than one node is the exception: the host starts
``python -m …supervise`` for it (``ranks.py`` forwards signals, which only a process can).

A request is a JSON object ``{"job": {...}, "cwd": "...", "env": {...}}`` — ``job``: the
supervisor's arguments (``supervise.arguments``: ``run_dir``, ``partial``, ``final``,
``label``, ``unset``, ``retries``, ``nodes``, ``command``), ``env``: the job's environment with
what only a supervisor needs (its ``unset`` names) — preceded by its length (8 bytes, big
endian), which carries two file descriptors: the run's ``lock`` (an exclusive ``flock`` the
applying process took; the host holds it until the run's ``exit_code`` is written, so no second
supervisor starts for the same run, and whoever waits for the run waits for the lock:
``runlock.py``) and ``log.txt`` (the command's stdout and stderr, and the host's lines about
the run). The reply is one line: ``ok PID START`` — the supervisor's pid and start time
(``process.ProcessRef``): the host's own, or the ``supervise`` process's on more than one node
— or ``error ERRNO MESSAGE`` when nothing was started. When a run it supervises in a thread
has ended (its lock let go) the host says ``end "RUN_DIR"`` (JSON), and when the socket is
closed, ``runs N``: how many it still supervises.

A hosted run has no ``supervisor.json`` (one file fewer per job): its ``child.json`` names
the command and, under ``"host"``, the host. The host outlives the run, so the run is live while
its lock is held (``job.supervisor_of``), and stopping the run must not stop the host: it is
asked through ``RunFiles.stop`` (a file; no attempt follows) and its command's process group is
signalled. Each command starts in a session of its own, with
``/dev/null`` as stdin, the request's working directory, and no descriptor of the host (the
lock included).

The host runs in a session of its own: ``kill -9`` of the applying process leaves it, and the
jobs it supervises, running, and the next apply adopts them. It stops taking requests when the
socket is closed (the applying process ended, however it ended) and exits when its last run has
ended. SIGTERM, SIGINT or SIGHUP stop every run it supervises (each recorded as stopped) and end
it. ``kill -9`` of the host itself is what ``kill -9`` of a supervisor is: the commands go on
unsupervised, their exit codes are lost, and the next apply stops them and runs them again.
Nothing from the engine is imported beyond what the supervisor imports.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from substratus.runtimes.local import supervise
from substratus.runtimes.local.files import disk_full, write_json
from substratus.runtimes.local.process import ProcessRef, signal_group
from substratus.runtimes.local.workdir import RunFiles

HEADER = 8  # bytes of the length that precedes a request
FDS = 2  # lock, log
NAME = b"substratus-host"  # /proc/PID/comm of the host (what ps shows)
# ``python -m …supervise`` from the same substratus as this process, whatever PYTHONPATH says.
ROOT = str(Path(__file__).resolve().parents[3])
SUPERVISE = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from substratus.runtimes.local.supervise import main; sys.exit(main(sys.argv[2:]))"
)


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


class HostedRun:
    """One job run supervised in a thread of the host (``run``): the ``supervise.Hooks`` of a
    thread — each attempt a ``subprocess.Popen`` in its own session, lines said into the log,
    a stop asked by the host or through ``RunFiles.stop``."""

    def __init__(self, host: Host, request: Mapping[str, Any], lock: int, log: int) -> None:
        self.host, self.lock, self.log = host, lock, log
        self.args = supervise.arguments(request["job"], lock)
        self.files = RunFiles(self.args.run_dir)
        self.stop = os.fspath(self.files.stop)
        self.cwd = str(request["cwd"])
        unset = set(self.args.unset)
        self.env = {k: str(v) for k, v in dict(request["env"]).items() if k not in unset}
        self.child: ProcessRef | None = None

    def run(self) -> None:
        """Supervise the run, then let go of its log and lock (in that order: the run has
        ended for whoever waits once its lock is free)."""
        try:
            hooks = supervise.Hooks(self.attempt, self.say, self.stop_asked, {})
            supervise.supervise_with(self.args, hooks)
        except BaseException as exc:  # never leave a run without a word: the log says why
            self.say(f"the job host failed supervising this run: {exc!r}")
        finally:
            os.close(self.log)
            os.close(self.lock)
            self.host.ended(self)

    def say(self, text: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self.log, f"substratus: {text}\n".encode())

    def stop_asked(self) -> bool:
        return self.host.stopping.is_set() or os.path.exists(self.stop)

    def attempt(self, number: int) -> tuple[int, str, str]:
        """Run attempt ``number``: (its exit code, a signal N as 128+N; why the disk stopped
        it; '')."""
        env = {**self.env, supervise.ATTEMPT_ENV: str(number)}
        child = subprocess.Popen(  # vfork + exec; no descriptor of the host is inherited
            self.args.command,
            executable=self.host.executable(self.args.command, env),
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        self.child = ProcessRef.of(child.pid)
        if self.child is not None:
            with contextlib.suppress(OSError):  # only lost if the host is killed too
                write_json(self.files.child, {**self.child.to_json(), "host": self.host.record})
        if self.stop_asked():  # told to stop while this attempt started: it stops too
            self.signal(signal.SIGTERM)
        code = child.wait()
        self.child = None
        full = disk_full([self.files.dir, self.args.partial]) if code else None
        return (128 - code if code < 0 else code), full or "", ""

    def signal(self, sig: int) -> None:
        child = self.child
        if child is not None:
            signal_group(child, sig)


class Host:
    """The runs of this host: started by ``start``, each in its own thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        me = ProcessRef.of(os.getpid())
        self.ref = me
        self.record = me.to_json() if me is not None else {}  # in each run's child.json
        self.stopping = threading.Event()
        self.mutex = threading.Lock()
        self.sending = threading.Lock()  # one line at a time on the socket
        self.runs: dict[HostedRun, threading.Thread] = {}
        self.found: dict[tuple[str, str], str | None] = {}  # (command, PATH) -> its file
        self.others: list[subprocess.Popen[bytes]] = []  # supervise processes (several nodes)

    def executable(self, command: list[str], env: Mapping[str, str]) -> str | None:
        """The file ``command`` runs, looked up in ``env``'s ``PATH`` once per host (not by
        ``exec`` in every directory of it for every job); ``FileNotFoundError`` when none.
        None (``Popen`` looks it up in the job's working directory) when ``PATH`` has a
        relative directory."""
        key = (command[0], env.get("PATH", os.defpath))
        with self.mutex:
            if key in self.found:
                return self.found[key]
        found = None
        if all(os.path.isabs(d) for d in key[1].split(os.pathsep)):
            found = supervise.executable(command, env)
        with self.mutex:
            self.found[key] = found
        return found

    def start(self, request: Mapping[str, Any], fds: list[int]) -> str:
        """Start supervising one request (owning ``fds`` from now on); the reply line."""
        if len(fds) != FDS:
            for fd in fds:
                os.close(fd)
            return f"error 0 expected {FDS} file descriptors, got {len(fds)}\n"
        lock, log = fds
        try:
            if int(request["job"].get("nodes", 1)) > 1:
                return self._start_process(request, lock, log)
            if self.ref is None or self.stopping.is_set():
                raise OSError(0, "the job host is stopping")
            os.set_inheritable(lock, False)
            os.set_inheritable(log, False)
            run = HostedRun(self, request, lock, log)
        except OSError as exc:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            return f"error {exc.errno or 0} {exc.strerror or exc}\n"
        thread = threading.Thread(target=run.run, name=f"run-{run.files.dir.name}")
        with self.mutex:
            self.runs[run] = thread
        thread.start()
        return f"ok {self.ref.pid} {self.ref.start}\n"

    def _start_process(self, request: Mapping[str, Any], lock: int, log: int) -> str:
        """Start ``python -m …supervise`` for a job on more than one node (its own session,
        holding the lock); the host keeps no descriptor of it once it started (when it could
        not start, ``start`` closes them: each exactly once, as other threads open files)."""
        argv = supervise.command_line(request["job"], lock)
        process = subprocess.Popen(
            [sys.executable, "-I", "-c", SUPERVISE, ROOT, *argv],
            cwd=str(request["cwd"]),
            env={k: str(v) for k, v in dict(request["env"]).items()},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(lock,),
            start_new_session=True,
        )
        os.close(lock)
        os.close(log)
        with self.mutex:
            self.others = [p for p in self.others if p.poll() is None] + [process]
        ref = ProcessRef.of(process.pid)
        return f"ok {process.pid} {ref.start if ref is not None else -1}\n"

    def active(self) -> int:
        """The runs (and ``supervise`` processes) still going on."""
        with self.mutex:
            return len(self.runs) + sum(1 for p in self.others if p.poll() is None)

    def ended(self, run: HostedRun) -> None:
        """Forget ``run`` (its lock let go) and say so: ``end "RUN_DIR"``."""
        with self.mutex:
            self.runs.pop(run, None)
        self.send(f"end {json.dumps(str(run.files.dir))}\n")

    def send(self, line: str) -> None:
        """Write a line to the applying process (lost when it is gone)."""
        with self.sending, contextlib.suppress(OSError):
            self.sock.sendall(line.encode())

    def stop_all(self, _signum: int = 0, _frame: FrameType | None = None) -> None:
        """Stop every run (no attempt follows; each is recorded) and take no more requests."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # ends the wait for the next request
        with self.mutex:
            runs = list(self.runs)
        for run in runs:
            run.signal(signal.SIGTERM)

    def finish(self) -> None:
        """Wait for every run and ``supervise`` process this host started to end."""
        while True:
            with self.mutex:
                threads, others = list(self.runs.values()), list(self.others)
                self.others = []
            if not threads and not others:
                return
            for thread in threads:
                thread.join()
            for process in others:
                process.wait()


def serve(sock: socket.socket) -> int:
    """Take requests until the socket is closed or the host is told to stop, then wait for
    every run to end."""
    host = Host(sock)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, host.stop_all)
    with contextlib.suppress(OSError), open("/proc/self/comm", "wb") as comm:
        comm.write(NAME)
    try:
        while not host.stopping.is_set():
            try:
                received = receive(sock)
            except (ConnectionResetError, BrokenPipeError):
                break
            if received is None:
                host.send(f"runs {host.active()}\n")  # the launcher waits for us when none
                break
            request, fds = received
            host.send(host.start(request, fds))
    finally:
        with host.sending, contextlib.suppress(OSError):
            sock.close()  # an applying process waiting for a reply finds the host gone
        host.finish()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "--fd":
        print("usage: python -m substratus.runtimes.local.host --fd N", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(args[1]))
    try:
        return serve(sock)
    except OSError as exc:  # the socket failed: the launcher finds this host gone
        print(f"substratus: the job host stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        gc.freeze()  # exiting: no collection at shutdown (the applying process waits for it)


if __name__ == "__main__":
    sys.exit(main())
