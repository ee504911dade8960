"""``GcsBackend``: the ``Backend`` (and ``LeaseRenewal``) for ``gs://bucket/prefix`` (DESIGN §7).

Composition only: the state is ``store.StateStore`` (base + journal, compare-and-swap), the lock
is ``lock.GcsLock`` (generation ids, lease, safe takeover), the objects are named by
``layout.Names``, and every request goes through ``client.Bucket`` (retries, error mapping).

- The lock has its own ``Bucket`` (its own HTTP session), because ``renew`` runs on a thread of
  the CLI while the main thread writes the state; its retries stop after one lease at most.
- ``unlock`` first folds the journal this backend wrote into a new base (``StateStore.fold``,
  best-effort, only while the lock is still its own), so the next reader downloads one object.
- ``workspaces()`` lists ``<prefix>/`` with delimiter ``/``: every valid name ``W`` with a
  ``W.json``, plus ``default``. ``delete_workspace(token)`` removes the state of this workspace
  and its journal (CAS on ``token``: ``StateConflict`` when it changed since it was read); the
  caller holds the lock and releases it afterwards. ``recover(source)`` rebuilds a damaged state
  (``gcs.recovery``), also under the caller's lock.
- Settings: ``lease_seconds`` (default ``SUBSTRATUS_LOCK_LEASE`` or 60 s) and ``deadline_seconds``
  for retries (default ``SUBSTRATUS_GCS_DEADLINE`` or 120 s).
"""

from __future__ import annotations

from substratus.engine.backend import LockInfo
from substratus.engine.statefile import StateFile
from substratus.state.gcs.client import Bucket
from substratus.state.gcs.layout import (
    DEADLINE_ENV,
    DEFAULT_DEADLINE_S,
    DEFAULT_LEASE_S,
    LEASE_ENV,
    Names,
    env_seconds,
    parse_url,
)
from substratus.state.gcs.lock import GcsLock
from substratus.state.gcs.store import StateStore
from substratus.state.workspace import DEFAULT_WORKSPACE, check_workspace, is_workspace_name


class GcsBackend:
    def __init__(
        self,
        url: str,
        workspace: str = DEFAULT_WORKSPACE,
        *,
        lease_seconds: float | None = None,
        deadline_seconds: float | None = None,
    ) -> None:
        self.workspace = check_workspace(workspace)
        self.location = parse_url(url)
        self.url = self.location.url
        self.lease_seconds = (
            lease_seconds if lease_seconds is not None else env_seconds(LEASE_ENV, DEFAULT_LEASE_S)
        )
        deadline = (
            deadline_seconds
            if deadline_seconds is not None
            else env_seconds(DEADLINE_ENV, DEFAULT_DEADLINE_S)
        )
        self.names = Names(self.location, self.workspace)
        self.bucket = Bucket(self.location.bucket, deadline=deadline)
        self.store = StateStore(self.bucket, self.names)
        # Retrying a renewal for longer than the lease is pointless: the lock is lost by then.
        lock_bucket = Bucket(self.location.bucket, deadline=min(deadline, self.lease_seconds))
        self.locks = GcsLock(lock_bucket, self.names, self.lease_seconds)

    def __repr__(self) -> str:
        return f"GcsBackend({self.url!r}, workspace={self.workspace!r})"

    @property
    def takeover(self) -> LockInfo | None:
        return self.locks.takeover

    # -- state -------------------------------------------------------------------------------

    def read(self) -> tuple[StateFile | None, str | None]:
        return self.store.read()

    def write(self, state: StateFile, expected_token: str | None, changed: list[str]) -> str:
        return self.store.write(state, expected_token, changed)

    def workspaces(self) -> list[str]:
        prefix = self.location.object("")
        objects, _ = self.bucket.list_objects(prefix, delimiter="/")
        names = {DEFAULT_WORKSPACE}
        for obj in objects:
            name = obj.name[len(prefix) :].removesuffix(".json")
            if obj.name.endswith(".json") and is_workspace_name(name):
                names.add(name)
        return sorted(names)

    def delete_workspace(self, expected_token: str | None) -> None:
        self.store.delete(expected_token)

    def recover(self, source: tuple[str, bytes] | None) -> str:
        return self.store.recover(source)

    # -- lock --------------------------------------------------------------------------------

    def lock(self, info: LockInfo) -> str:
        return self.locks.lock(info)

    def unlock(self, lock_id: str) -> None:
        if self.store.journaled() and self.locks.holds(lock_id):
            self.store.fold()  # (a holder that lost its lock leaves the journal to the new one)
        self.locks.unlock(lock_id)

    def renew(self, lock_id: str) -> None:
        self.locks.renew(lock_id)

    def current_lock(self) -> LockInfo | None:
        return self.locks.current()

    def force_unlock(self, lock_id: str) -> LockInfo:
        return self.locks.force_unlock(lock_id)
