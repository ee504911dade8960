"""The Backend protocol: where the state lives, and its lock.

Implementations live in ``substratus.state`` (``file://``, ``gs://``); the engine only sees this
protocol. Contracts every backend keeps:

- ``read()`` returns the current ``StateFile`` (or ``None`` when there is none yet) and an opaque
  ``token`` describing the stored version.
- ``write(state, expected_token, changed)`` stores ``state`` only if the stored version is still
  ``expected_token`` (compare-and-swap) and returns the new token; otherwise it raises
  ``StateConflict`` (the walker then stops: nothing new starts). ``changed`` lists the addresses
  that differ from the last write, so a backend can persist incrementally (a journal) instead of
  rewriting everything; the state must be durable when ``write`` returns. The caller has already
  increased ``state.serial``.
- ``lock(info)`` takes an exclusive lock or raises ``LockHeld`` with the holder's ``LockInfo``;
  ``unlock(lock_id)`` releases only that lock. ``force_unlock(lock_id)`` removes a lock left behind
  and returns what it removed, or raises ``LockNotFound``.
- Errors a user can fix (unreachable bucket, permissions, corrupt state) are raised as
  ``engine.diagnostic.DiagnosticError``.
- Optional, ``LeaseRenewal``: a backend whose locks expire unless renewed (a lease) says so with
  ``lease_seconds`` and ``renew(lock_id)``, which extends the lease and keeps the id, or raises
  ``LockNotFound`` when the lock was taken over or removed (its keeper then reports ``LockLost``
  through a ``LockWatch``, and the walker stops). The file backend has no lease.
- Optional, ``TakesOver``: after ``lock``, ``takeover`` is the holder of the abandoned lock it
  took over (an expired lease; a process of this host that is gone), ``None`` otherwise.
- Optional, ``Recovers``: ``recover(source)`` rebuilds a damaged state (a journal that does not
  belong to its base, which ``read`` refuses) by replaying the journal over a copy of the state it
  continues: ``source`` = ``(name, bytes)`` of a copy the user names, else the backend's own
  copies. It returns what it did for the user, writes nothing when the state reads correctly, and
  raises ``DiagnosticError`` (nothing written) when no copy can be used. The caller holds the lock.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from substratus import __version__
from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.statefile import StateFile, now_iso


@dataclass
class LockInfo:
    """Who holds (or wants) the lock. ``id`` is assigned by the backend when locking."""

    operation: str
    id: str = ""
    who: str = field(default_factory=lambda: f"{_user()}@{socket.gethostname()}")
    pid: int = field(default_factory=os.getpid)
    created: str = field(default_factory=now_iso)
    expires: str | None = None
    version: str = __version__
    path: str = ""
    ci: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LockInfo:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def describe(self) -> str:
        lines = [
            f"  ID:        {self.id}",
            f"  Path:      {self.path}",
            f"  Operation: {self.operation}",
            f"  Who:       {self.who} (pid {self.pid})",
            f"  Version:   {self.version}",
            f"  Created:   {self.created}",
        ]
        if self.expires:
            lines.append(f"  Expires:   {self.expires}")
        for key, value in sorted(self.ci.items()):
            lines.append(f"  CI {key}: {value}")
        return "\n".join(lines)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def ci_context(env: dict[str, str] | None = None) -> dict[str, str]:
    """The CI run URL / PR number from the standard CI variables, when present."""
    env = dict(os.environ) if env is None else env
    ci: dict[str, str] = {}
    server, repo, run = (
        env.get("GITHUB_SERVER_URL"),
        env.get("GITHUB_REPOSITORY"),
        env.get("GITHUB_RUN_ID"),
    )
    if server and repo and run:
        ci["run_url"] = f"{server}/{repo}/actions/runs/{run}"
    ref = env.get("GITHUB_REF", "")
    if ref.startswith("refs/pull/"):
        ci["pr"] = ref.split("/")[2]
    if env.get("CI_JOB_URL"):
        ci["run_url"] = env["CI_JOB_URL"]
    if env.get("CI_MERGE_REQUEST_IID"):
        ci["pr"] = env["CI_MERGE_REQUEST_IID"]
    return ci


class LockHeld(Exception):
    """The lock is held by someone else; ``holder`` says who."""

    def __init__(self, holder: LockInfo, note: str = "") -> None:
        self.holder = holder
        self.note = note
        super().__init__(f"state is locked by {holder.who} since {holder.created}")


class LockNotFound(Exception):
    """``force_unlock``/``unlock`` named a lock that does not exist (or has another id)."""


class StateConflict(Exception):
    """A compare-and-swap write lost: the stored state changed since it was read."""


class StateUnwritable(DiagnosticError):
    """The state could not be written for a reason the user must fix (a full disk, a read-only
    file system, permissions): the backend's ``DiagnosticError``, as the walker sees it when it
    stops (``engine.apply``), so that it is reported once, as the reason the apply stopped."""

    def __init__(self, cause: DiagnosticError) -> None:
        super().__init__(cause.diagnostics)


class LockLost(Exception):
    """The state lock this run holds was taken over or removed while it ran (a lease that was
    not renewed in time, a ``force-unlock``): another run may change the state now."""


class LockWatch:
    """The state lock as the one keeping it sees it while a command runs.

    ``lose(exc)`` (the lease renewal found the lock taken over or removed) calls every callback
    given to ``on_lost`` with that ``LockLost``, once; a callback added after the loss is called
    at once. Thread-safe: the renewal runs on its own thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lost: LockLost | None = None
        self._callbacks: list[Callable[[LockLost], None]] = []

    @property
    def lost(self) -> LockLost | None:
        return self._lost

    def on_lost(self, callback: Callable[[LockLost], None]) -> None:
        with self._lock:
            lost = self._lost
            if lost is None:
                self._callbacks.append(callback)
        if lost is not None:
            callback(lost)

    def lose(self, exc: LockLost) -> None:
        with self._lock:
            if self._lost is not None:
                return
            self._lost, callbacks = exc, list(self._callbacks)
        for callback in callbacks:
            callback(exc)


class Backend(Protocol):
    url: str
    workspace: str

    def read(self) -> tuple[StateFile | None, str | None]: ...

    def write(self, state: StateFile, expected_token: str | None, changed: list[str]) -> str: ...

    def lock(self, info: LockInfo) -> str: ...

    def unlock(self, lock_id: str) -> None: ...

    def current_lock(self) -> LockInfo | None: ...

    def force_unlock(self, lock_id: str) -> LockInfo: ...

    def workspaces(self) -> list[str]: ...


@runtime_checkable
class LeaseRenewal(Protocol):
    """A backend whose locks carry a lease that the holder renews while it works."""

    @property
    def lease_seconds(self) -> float: ...

    @property
    def takeover(self) -> LockInfo | None:
        """Set by ``lock``: the holder of the expired lock it took over, else ``None``."""
        ...

    def renew(self, lock_id: str) -> None: ...


@runtime_checkable
class TakesOver(Protocol):
    """A backend that takes over a lock whose holder is gone (an expired lease, a process of
    this host that no longer runs) and says whose it was."""

    @property
    def takeover(self) -> LockInfo | None:
        """Set by ``lock``: the holder of the abandoned lock it took over, else ``None``."""
        ...


@runtime_checkable
class Recovers(Protocol):
    """A backend that can rebuild a damaged state from its journal (``state recover``)."""

    def recover(self, source: tuple[str, bytes] | None) -> str: ...
