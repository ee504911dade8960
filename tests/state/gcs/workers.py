"""Worker processes for the GCS state backend tests: ``python -m tests.state.gcs.workers CMD …``.

Each prints one JSON object per line on stdout (flushed), so a parent can follow it and kill it at
any point. ``STORAGE_EMULATOR_HOST`` and ``SUBSTRATUS_LOCK_LEASE`` come from the environment.

``rounds URL WORKER ROUNDS MARKER TIMEOUT``
    ROUNDS times: take the lock through the CLI's ``locked`` (waiting up to TIMEOUT; with ``0s``
    it fails at once and the worker tries again a moment later), read, add
    ``model.w<WORKER>-<round>``, write, release. While it holds the lock it keeps the file MARKER
    (created with ``O_EXCL``: a second holder at the same time would find it and exit 3).
    Prints ``{"round", "serial", "refused"}`` per round (``refused``: lock attempts that failed).
``takeover URL GO``
    Prints ``{"ready": true}``, waits until the file GO exists, then calls ``lock`` once:
    ``{"won": id, "stale": id}`` or ``{"held": id}``.
``writer URL NAME COUNT``
    Takes the lock through ``locked`` (waiting up to 30 s, so a killed predecessor's lock is
    taken over once its lease expires), reads (``{"start": serial, "addresses": [...]}``), then
    makes COUNT writes adding ``model.<NAME>-<n>`` (every 5th a compaction), printing
    ``{"done": serial, "address": …}`` after each write has returned.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

from substratus.cli.locking import locked
from substratus.engine.backend import LockHeld, LockInfo
from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.statefile import ResourceRecord, StateFile
from substratus.state.gcs import GcsBackend


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def record(name: str) -> ResourceRecord:
    return ResourceRecord(
        kind="Model", namespace="default", name=name, digest=f"sha256:{name}", spec={"n": name}
    )


def rounds(url: str, worker: str, count: int, marker: Path, timeout: str) -> None:
    backend = GcsBackend(url)
    done = 0
    refused = 0
    while done < count:
        try:
            with locked(backend, "apply", True, timeout):
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    say(violation=f"worker {worker} got the lock while {marker} exists")
                    sys.exit(3)
                os.close(fd)
                try:
                    state, token = backend.read()
                    state = state or StateFile.new()
                    address = f"model.w{worker}-{done}"
                    state.resources[address] = record(f"w{worker}-{done}")
                    state.serial += 1
                    backend.write(state, token, [address])
                finally:
                    os.unlink(marker)
            say(round=done, serial=state.serial, refused=refused)
            done += 1
        except DiagnosticError as exc:
            if "state lock" not in str(exc):
                raise
            refused += 1
            time.sleep(random.uniform(0.05, 0.3))


def takeover(url: str, go: Path) -> None:
    backend = GcsBackend(url)
    say(ready=True)
    while not go.exists():
        time.sleep(0.002)
    try:
        lock_id = backend.lock(LockInfo(operation="apply"))
    except LockHeld as held:
        say(held=held.holder.id)
        return
    stale = backend.takeover
    say(won=lock_id, stale=stale.id if stale else None)


def writer(url: str, name: str, count: int) -> None:
    backend = GcsBackend(url)
    with locked(backend, "apply", True, "30s"):
        state, token = backend.read()
        state = state or StateFile.new()
        say(start=state.serial, addresses=sorted(state.resources))
        for n in range(count):
            address = f"model.{name}-{n}"
            state.resources[address] = record(f"{name}-{n}")
            state.serial += 1
            token = backend.write(state, token, [] if n % 5 == 4 else [address])
            say(done=state.serial, address=address)


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "rounds":
        rounds(args[0], args[1], int(args[2]), Path(args[3]), args[4])
    elif command == "takeover":
        takeover(args[0], Path(args[1]))
    elif command == "writer":
        writer(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
