"""The state lock in GCS: ``W.lock``, its id the object's generation, with a renewable lease.

- ``lock(info)`` creates the object with ``if_generation_match=0``; the body is the ``LockInfo``
  JSON (``path``, ``expires`` filled in) and the custom metadata holds ``holder`` (the same JSON,
  so one metadata read tells who holds it), ``expires`` (ISO time, renewed), ``lease`` (seconds)
  and ``writer`` (a nonce, to recognise our own create after an ambiguous retry). The id is the
  generation, so ``force-unlock ID`` and ``unlock`` name exactly one lock.
- Held: the holder's lease has expired when the current time is past all of ``expires`` in the
  metadata, ``expires`` in the body and the server's ``updated`` time plus the lease (so a holder
  whose clock runs slow cannot make its own lock look expired early). Not expired: ``LockHeld``
  with the holder (``id`` = generation, ``expires`` = that time). Expired: taken over by
  overwriting the object with ``if_generation_match`` = the stale generation (and its
  metageneration, which a renewal changes on GCS): of two takers exactly one wins, the other gets
  412 and looks again (and finds the winner's live lock). The stale holder is kept in
  ``takeover`` and logged as a warning.
- ``renew(id)`` patches ``expires`` with ``if_generation_match=id`` and
  ``if_metageneration_match`` = the metageneration last seen, so the id never changes and a lock
  taken over (new generation) or removed is reported as ``LockNotFound``.
- ``unlock(id)`` / ``force_unlock(id)`` delete with ``if_generation_match=id``: they can only
  remove that very lock (404/412 → ``LockNotFound``, naming the lock there is now, if any).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from substratus.engine.backend import LockHeld, LockInfo, LockNotFound
from substratus.state.gcs.client import Bucket, Missing, ObjectInfo, Precondition
from substratus.state.gcs.layout import Names

ATTEMPTS = 5
log = logging.getLogger("substratus.state.gcs")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class GcsLock:
    def __init__(self, bucket: Bucket, names: Names, lease_seconds: float) -> None:
        self.bucket = bucket
        self.names = names
        self.lease_seconds = lease_seconds
        self.path = names.location.uri(names.lock)
        self.takeover: LockInfo | None = None
        self._metagenerations: dict[str, int | None] = {}

    def lock(self, info: LockInfo) -> str:
        self.takeover = None
        holder: LockInfo | None = None
        for _ in range(ATTEMPTS):
            try:
                return self._create(info, 0, None)
            except Precondition:
                pass
            found = self.bucket.stat(self.names.lock)
            if found is None:
                continue  # released in between: try again
            holder, expires = self._holder(found)
            if datetime.now(UTC) < expires:
                raise LockHeld(holder, self._note(holder))
            try:
                lock_id = self._create(info, found.generation, found.metageneration)
            except Precondition:
                continue  # another taker won, or the holder renewed: look again
            self.takeover = holder
            log.warning(
                "took over the expired lock of %s (pid %s, %s since %s; lease expired %s)",
                holder.who,
                holder.pid,
                holder.operation,
                holder.created,
                holder.expires,
            )
            return lock_id
        if holder is None:
            raise LockHeld(LockInfo(operation="unknown", who="unknown", pid=0, path=self.path))
        raise LockHeld(holder, self._note(holder))

    def unlock(self, lock_id: str) -> None:
        self._delete(lock_id, "unlock")

    def force_unlock(self, lock_id: str) -> LockInfo:
        generation = self._generation(lock_id, "force-unlock")
        found = self.bucket.stat(self.names.lock)
        if found is None or found.generation != generation:
            raise LockNotFound(self._not_there(lock_id, "force-unlock", found))
        holder, _ = self._holder(found)
        self._delete(lock_id, "force-unlock")
        return holder

    def holds(self, lock_id: str) -> bool:
        """Whether the lock ``lock_id`` is still the live lock object."""
        found = self.bucket.stat(self.names.lock)
        return found is not None and str(found.generation) == lock_id

    def current(self) -> LockInfo | None:
        found = self.bucket.stat(self.names.lock)
        return None if found is None else self._holder(found)[0]

    def renew(self, lock_id: str) -> None:
        generation = self._generation(lock_id, "renew")
        expires = {"expires": iso(datetime.now(UTC) + timedelta(seconds=self.lease_seconds))}
        for _ in range(ATTEMPTS):
            metageneration = self._metagenerations.get(lock_id)
            if metageneration is None:
                found = self.bucket.stat(self.names.lock)
                if found is None or found.generation != generation:
                    raise LockNotFound(self._not_there(lock_id, "renew", found))
                metageneration = found.metageneration
            try:
                patched = self.bucket.patch_metadata(
                    self.names.lock,
                    expires,
                    if_generation_match=generation,
                    if_metageneration_match=metageneration,
                )
            except Missing:
                raise LockNotFound(self._not_there(lock_id, "renew", None)) from None
            except Precondition:
                self._metagenerations[lock_id] = None  # look at the object again
                continue
            self._metagenerations[lock_id] = patched.metageneration
            return
        raise LockNotFound(f"could not renew the lock {lock_id} on {self.path}: it keeps changing")

    # -- helpers ------------------------------------------------------------------------------

    def _create(self, info: LockInfo, if_generation_match: int, metageneration: int | None) -> str:
        expires = iso(datetime.now(UTC) + timedelta(seconds=self.lease_seconds))
        record = replace(info, id="", path=self.path, expires=expires)
        holder = json.dumps(record.to_json(), separators=(",", ":"))
        created = self.bucket.create(
            self.names.lock,
            (json.dumps(record.to_json(), indent=2) + "\n").encode(),
            if_generation_match=if_generation_match,
            if_metageneration_match=metageneration,
            metadata={
                "holder": holder,
                "expires": expires,
                "lease": f"{self.lease_seconds:g}",
                "writer": uuid.uuid4().hex,
            },
        )
        lock_id = str(created.generation)
        self._metagenerations[lock_id] = created.metageneration
        return lock_id

    def _holder(self, found: ObjectInfo) -> tuple[LockInfo, datetime]:
        """The holder recorded in the lock object (``id`` = generation) and when it expires."""
        meta = found.metadata
        try:
            doc = json.loads(meta.get("holder", ""))
            holder = LockInfo.from_json(doc if isinstance(doc, dict) else {})
        except (ValueError, TypeError):
            holder = LockInfo(operation="unknown", who="unknown", pid=0, version="unknown")
        try:
            lease = float(meta.get("lease", ""))
        except ValueError:
            lease = self.lease_seconds
        times = [parse_time(meta.get("expires")), parse_time(holder.expires)]
        if found.updated is not None:
            times.append(found.updated + timedelta(seconds=lease))
        known = [t for t in times if t is not None]
        expires = max(known) if known else datetime.now(UTC) + timedelta(seconds=lease)
        holder = replace(holder, id=str(found.generation), path=self.path, expires=iso(expires))
        return holder, expires

    def _note(self, holder: LockInfo) -> str:
        return (
            f"Its holder renews the lock while it runs; the lease expires at {holder.expires}. "
            "If the holder crashed, the next run after that takes the lock over by itself (wait "
            "with --lock-timeout), or remove it now with force-unlock."
        )

    def _generation(self, lock_id: str, verb: str) -> int:
        if not lock_id.isdigit():
            raise LockNotFound(
                f"cannot {verb} {lock_id!r}: the id of a lock in GCS is the generation number "
                f"of {self.path} (digits only), as shown in the lock error"
            )
        return int(lock_id)

    def _delete(self, lock_id: str, verb: str) -> None:
        generation = self._generation(lock_id, verb)
        try:
            self.bucket.delete(self.names.lock, if_generation_match=generation)
        except (Missing, Precondition):
            raise LockNotFound(
                self._not_there(lock_id, verb, self.bucket.stat(self.names.lock))
            ) from None
        self._metagenerations.pop(lock_id, None)

    def _not_there(self, lock_id: str, verb: str, found: ObjectInfo | None) -> str:
        if found is None:
            return f"cannot {verb} {lock_id!r}: there is no lock on {self.path}"
        holder, _ = self._holder(found)
        return (
            f"cannot {verb} {lock_id!r}: the lock on {self.path} is now {holder.id}, held by "
            f"{holder.who} (pid {holder.pid}, {holder.operation}) since {holder.created}"
        )
