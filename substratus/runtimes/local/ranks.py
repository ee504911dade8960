"""A job run on more than one node, on this machine: N rank processes under one supervisor.

``run(command, executable, env, nodes, run)`` is what the supervisor (``supervise.py``) does
instead of running one command when a job asks for ``resources.nodes: N`` above 1:

- it finds a free TCP port on 127.0.0.1 (``MASTER_PORT``) and starts N processes of the same
  command, in the same working directory and content directory (the same ``artifacts/``), each
  with ``rank_env``: ``MASTER_ADDR=127.0.0.1``, ``MASTER_PORT``, ``WORLD_SIZE`` = N and
  ``RANK`` = ``NODE_RANK`` = its index — what ``torchrun --nnodes --node_rank --master_addr
  --master_port`` expects, as on Kubernetes;
- each rank runs in its own process group (so stopping a rank stops what it started), with
  stdin ``/dev/null``; its stdout and stderr go through a pipe into the supervisor's stdout (the
  run's ``log.txt``), every line prefixed ``[rank I] `` and written whole, so ``substratus
  logs`` shows every rank and lines of two ranks never mix;
- it records the ranks (pids with start times) in ``ranks.json`` and rank 0 in ``child.json``
  before it waits, so a later apply or a destroy can stop ranks whose supervisor was killed
  (``stop_ranks``);
- SIGTERM/SIGINT to the supervisor are forwarded to every rank's group;
- the run succeeds when every rank exits 0. The first rank that fails (a non-zero exit or a
  signal, recorded as 128+N) stops the others: SIGTERM to their groups, SIGKILL after
  ``GRACE`` seconds. The result is that rank's code and a reason naming it
  (``rank 1 of 2 exited with code 3; the other ranks were stopped``).

It imports nothing from the engine (the supervisor starts fast).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from substratus.runtimes.local.files import read_json, write_json
from substratus.runtimes.local.process import ProcessRef, stop
from substratus.runtimes.local.workdir import RunFiles

MASTER_ADDR = "127.0.0.1"
GRACE = 10.0  # seconds the other ranks get to stop after one failed, before SIGKILL
JOIN = 5.0  # seconds to wait for a rank's output after it ended (a child may hold the pipe)


def ranks_file(run: RunFiles) -> Path:
    """Where the ranks of a run are recorded (``{"ranks": [ref…], "master_port": N}``)."""
    return run.dir / "ranks.json"


def rank_env(env: Mapping[str, str], rank: int, world: int, port: int) -> dict[str, str]:
    """``env`` with the variables of rank ``rank`` of ``world``."""
    return {
        **env,
        "MASTER_ADDR": MASTER_ADDR,
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(world),
        "RANK": str(rank),
        "NODE_RANK": str(rank),
    }


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((MASTER_ADDR, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_ranks(run: RunFiles) -> None:
    """Stop every rank of ``run`` still running (each with its process group)."""
    data = read_json(ranks_file(run)) or {}
    for item in data.get("ranks") or []:
        ref = ProcessRef.from_json(item if isinstance(item, dict) else None)
        if ref is not None:
            stop(ref)


class _Output:
    """Copies each rank's pipe into ``out`` (a file descriptor), line by line, prefixed."""

    def __init__(self, out: int) -> None:
        self.out, self.lock = out, threading.Lock()
        self.threads: list[threading.Thread] = []

    def follow(self, rank: int, pipe: int) -> None:
        thread = threading.Thread(target=self._copy, args=(rank, pipe), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _copy(self, rank: int, pipe: int) -> None:
        prefix = f"[rank {rank}] ".encode()
        with open(pipe, "rb") as lines, contextlib.suppress(OSError, ValueError):
            for line in lines:
                self._write(prefix + (line if line.endswith(b"\n") else line + b"\n"))

    def _write(self, data: bytes) -> None:
        with self.lock, contextlib.suppress(OSError):
            while data:
                data = data[os.write(self.out, data) :]

    def join(self) -> None:
        for thread in self.threads:
            thread.join(JOIN)


class _Ranks:
    """The running ranks: pid → rank, and signalling their process groups."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[int, int] = {}

    def signal(self, sig: int) -> None:
        with self.lock:
            pids = list(self.running)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.killpg(pid, sig)


def _spawn(
    command: list[str], executable: str, env: Mapping[str, str], out: _Output, rank: int
) -> int:
    """Start one rank (its own process group; stdout and stderr into a pipe ``out`` reads)."""
    read, write = os.pipe()
    try:
        pid = os.posix_spawn(
            executable,
            command,
            dict(env),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, write, 1),
                (os.POSIX_SPAWN_DUP2, write, 2),
            ],
            setpgroup=0,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    out.follow(rank, read)
    return pid


def _record(run: RunFiles, pids: list[int], port: int) -> None:
    refs = [ProcessRef.of(pid) for pid in pids]
    with contextlib.suppress(OSError):  # only lost if the supervisor is killed too
        write_json(
            ranks_file(run),
            {"ranks": [r.to_json() for r in refs if r is not None], "master_port": port},
        )
        if refs[0] is not None:
            write_json(run.child, refs[0].to_json())


def run(
    command: list[str],
    executable: str,
    env: Mapping[str, str],
    nodes: int,
    files: RunFiles,
    out: int = 1,
    stopped: list[int] | None = None,
) -> tuple[int, str]:
    """Run ``nodes`` ranks of ``command`` (see the module docstring): the exit code and, when
    one failed, why. Each signal forwarded is appended to ``stopped`` (one there already stops
    the ranks as they start). Raises ``OSError`` when a rank cannot be started (those started
    are stopped)."""
    port, output, ranks = free_port(), _Output(out), _Ranks()
    asked = [] if stopped is None else stopped

    def forward(signum: int, _frame: FrameType | None) -> None:
        asked.append(signum)
        ranks.signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    pids: list[int] = []
    try:
        for rank in range(nodes):
            pid = _spawn(command, executable, rank_env(env, rank, nodes, port), output, rank)
            with ranks.lock:
                ranks.running[pid] = rank
            pids.append(pid)
    except OSError:
        ranks.signal(signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        raise
    _record(files, pids, port)
    if asked:  # told to stop while the ranks started: they stop too
        ranks.signal(asked[-1])
    failed = _wait(ranks)
    output.join()
    if failed is None:
        return 0, ""
    rank, code = failed
    return code, (f"rank {rank} of {nodes} exited with code {code}; the other ranks were stopped")


def _wait(ranks: _Ranks) -> tuple[int, int] | None:
    """Wait for every rank; (rank, code) of the first that failed, after stopping the others
    (SIGTERM, SIGKILL after ``GRACE``); None when all exited 0."""
    failed: tuple[int, int] | None = None
    killer: threading.Timer | None = None
    while True:
        with ranks.lock:
            if not ranks.running:
                break
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        with ranks.lock:
            rank = ranks.running.pop(pid, None)
        if rank is None or code == 0 or failed is not None:
            continue
        failed = (rank, code)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGTERM)  # what the failed rank left behind
        ranks.signal(signal.SIGTERM)
        killer = threading.Timer(GRACE, ranks.signal, args=(signal.SIGKILL,))
        killer.daemon = True
        killer.start()
    if killer is not None:
        killer.cancel()
    return failed
