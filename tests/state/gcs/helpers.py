"""Helpers for the GCS state backend tests: object listings around the proxy, states, text."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from substratus.engine.backend import LockInfo
from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.statefile import ResourceRecord, StateFile
from substratus.state.gcs import GcsBackend
from tests.support.gcs import REPO_ROOT, GcsServer

LINEAGE = "00000000-0000-4000-8000-0000000000cc"


def objects(server: GcsServer, backend: GcsBackend) -> dict[str, int]:
    """Every object of the backend's bucket under its prefix: name (relative) → generation."""
    bucket = backend.location.bucket
    prefix = backend.location.object("")
    return {
        blob.name[len(prefix) :]: int(blob.generation)
        for blob in server.direct_client().list_blobs(bucket, prefix=prefix)
    }


def journal(server: GcsServer, backend: GcsBackend) -> list[str]:
    return sorted(name for name in objects(server, backend) if ".journal/" in name)


def record(name: str, size: int = 0) -> ResourceRecord:
    return ResourceRecord(
        kind="Model",
        namespace="default",
        name=name,
        digest=f"sha256:{name}",
        spec={"pad": "x" * size},
    )


def state_of(*names: str, serial: int = 1) -> StateFile:
    state = StateFile(lineage=LINEAGE, serial=serial)
    for name in names:
        state.resources[f"model.{name}"] = record(name)
    return state


def add(state: StateFile, name: str, size: int = 0) -> list[str]:
    """Add ``model.<name>`` and bump the serial; returns ``changed``."""
    state.resources[f"model.{name}"] = record(name, size)
    state.serial += 1
    return [f"model.{name}"]


def apply_like(backend: GcsBackend, resources: int, size: int = 300) -> StateFile:
    """The Walker's pattern under the lock: per resource a write recording it as pending, then
    one recording it as done (``changed=[address]``, serial + 1 each)."""
    lock_id = backend.lock(LockInfo(operation="apply"))
    state, token = backend.read()
    state = state or StateFile.new()
    for n in range(resources):
        token = backend.write(state, token, add(state, f"r{n}", size=size))
        state.resources[f"model.r{n}"].status = "ready"
        state.serial += 1
        token = backend.write(state, token, [f"model.r{n}"])
    backend.unlock(lock_id)
    return state


def outlive_lock(backend: GcsBackend) -> None:
    """Return once the wall clock is past the expiry of the lock there now, as the backend
    computes it (the lease of a holder that stopped renewing has run out): a wait for that
    moment, however long the machine took to get here."""
    current = backend.current_lock()
    assert current is not None and current.expires, current
    expires = datetime.fromisoformat(current.expires)
    while (left := (expires - datetime.now(UTC)).total_seconds()) >= 0:
        time.sleep(left + 0.05)


def text(exc: DiagnosticError) -> str:
    return " ".join(f"{d.summary} {d.detail}" for d in exc.diagnostics)


def worker(server: GcsServer, *args: str, lease: str = "2s") -> subprocess.Popen[str]:
    """``python -m tests.state.gcs.workers ARGS`` against the emulator; stdout piped."""
    env = {**os.environ, **server.env, "SUBSTRATUS_LOCK_LEASE": lease}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.state.gcs.workers", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli(
    server: GcsServer | None, cwd: Path, *args: str, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``substratus`` CLI in ``cwd`` with the emulator's environment (without it when
    ``server`` is ``None``) and ``env`` on top (``None`` values unset a variable)."""
    full = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    full.update(server.env if server else {})
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), full.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "substratus", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
