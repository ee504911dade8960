"""The GCS state backend's typed surface on one bucket (the SDK client and what counts as a
transient failure are ``substratus.gcs.client``'s, shared with the artifact store).

``Bucket`` is the narrow, typed surface the GCS state backend uses on one bucket: ``download``,
``stat``, ``create`` (always with a generation precondition), ``delete``, ``patch_metadata`` and
``list_objects``. Contracts:

- The SDK client is made on first use (building a backend does no I/O), one per ``Bucket`` (the
  SDK's HTTP session is not shared between threads). ``STORAGE_EMULATOR_HOST`` set: an anonymous
  client on that endpoint (project ``substratus``); otherwise Application Default Credentials.
- Transient failures (``gcs.client.is_transient``: 408, 429, 5xx, connection errors and resets,
  timeouts) are retried with ``engine.backoff`` (``RETRY``: first delay 0.1 s, doubling to at
  most 5 s, ±20 % jitter) until ``deadline`` seconds have passed; each request has its
  own ``timeout``. Retrying is safe because every mutating call carries a precondition. When an
  attempt was retried, an earlier one may have succeeded unseen: ``create`` then resolves a 412 by
  reading the object back and accepting it when its ``writer`` metadata is the nonce it sent, and
  ``delete`` takes a 404 as done.
- The caller handles ``Precondition`` (412) and ``Missing`` (404 on an object). What a user must
  fix is a ``DiagnosticError`` (``gcs.errors``): no bucket (404 on a listing or an upload), 403
  (naming the permission), no or rejected credentials, failing past the deadline, any other error
  answer. Anything else is a bug and propagates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from substratus.engine.backoff import GaveUp, retry
from substratus.gcs import client as gcs
from substratus.state.gcs import errors

T = TypeVar("T")
RETRY = gcs.REQUESTS  # the deadline is the Bucket's


class Outcome(Exception):
    """An answer the caller handles; ``retried``: an earlier attempt may have landed unseen."""

    def __init__(self, name: str, retried: bool) -> None:
        super().__init__(name)
        self.retried = retried


class Precondition(Outcome):
    """412: the object's generation (or metageneration) is not the one the call required."""


class Missing(Outcome):
    """404 on an object."""


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    generation: int
    metageneration: int | None = None
    size: int = 0
    updated: datetime | None = None  # the server's time of the last data or metadata change
    metadata: dict[str, str] = field(default_factory=dict)


def make_client() -> Any:
    """An SDK client (``gcs.client.make_client``); no credentials is a ``DiagnosticError``."""
    try:
        return gcs.make_client()
    except Exception as exc:
        if gcs.problem(exc) == "no_credentials":
            raise errors.no_credentials(str(exc)) from None
        raise


class Bucket:
    """One bucket, with retries and error mapping (see the module docstring)."""

    def __init__(self, name: str, *, deadline: float = 120.0, timeout: float = 60.0) -> None:
        self.name = name
        self.deadline = deadline
        self.timeout = timeout
        self._sdk: Any = None

    def _bucket(self) -> Any:
        if self._sdk is None:
            self._sdk = make_client().bucket(self.name)
        return self._sdk

    # -- operations ---------------------------------------------------------------------------

    def download(self, name: str, *, if_generation_match: int | None = None) -> tuple[bytes, int]:
        """The object's bytes and generation; ``Missing``, ``Precondition``."""
        blob = self._bucket().blob(name)
        data = self._run(
            "read",
            name,
            lambda: blob.download_as_bytes(
                if_generation_match=if_generation_match, timeout=self.timeout, retry=None
            ),
        )
        return bytes(data), int(blob.generation or 0)

    def stat(self, name: str) -> ObjectInfo | None:
        """The object's metadata, ``None`` when it does not exist."""
        blob = self._bucket().blob(name)
        try:
            self._run("read", name, lambda: blob.reload(timeout=self.timeout, retry=None))
        except Missing:
            return None
        return _info(blob)

    def create(
        self,
        name: str,
        data: bytes,
        *,
        if_generation_match: int,
        metadata: dict[str, str],
        if_metageneration_match: int | None = None,
    ) -> ObjectInfo:
        """Upload ``data`` if the live generation is ``if_generation_match`` (0: no object).

        ``metadata["writer"]`` must be a nonce unique to this call (see the module docstring).
        """
        blob = self._bucket().blob(name)
        blob.metadata = metadata
        operation = "create" if if_generation_match == 0 else "overwrite"

        def call() -> None:
            blob.upload_from_string(
                data,
                content_type="application/json",
                if_generation_match=if_generation_match,
                if_metageneration_match=if_metageneration_match,
                timeout=self.timeout,
                retry=None,
            )

        try:
            self._run(operation, name, call)
        except Precondition as exc:
            if exc.retried:  # did an attempt that looked failed land after all?
                found = self.stat(name)
                if found is not None and found.metadata.get("writer") == metadata.get("writer"):
                    return found
            raise
        return _info(blob)

    def delete(self, name: str, *, if_generation_match: int | None = None) -> None:
        """Delete the object; ``Missing`` (unless a retried attempt may have deleted it),
        ``Precondition``."""
        blob = self._bucket().blob(name)

        def call() -> None:
            blob.delete(if_generation_match=if_generation_match, timeout=self.timeout, retry=None)

        try:
            self._run("delete", name, call)
        except Missing as exc:
            if not exc.retried:
                raise

    def patch_metadata(
        self,
        name: str,
        metadata: dict[str, str],
        *,
        if_generation_match: int,
        if_metageneration_match: int | None,
    ) -> ObjectInfo:
        """Merge ``metadata`` into the object's custom metadata (its generation is kept)."""
        blob = self._bucket().blob(name)
        blob.metadata = metadata

        def call() -> None:
            blob.patch(
                if_generation_match=if_generation_match,
                if_metageneration_match=if_metageneration_match,
                timeout=self.timeout,
                retry=None,
            )

        self._run("update", name, call)
        return _info(blob)

    def list_objects(
        self, prefix: str, delimiter: str | None = None
    ) -> tuple[list[ObjectInfo], list[str]]:
        """Every object under ``prefix`` (and the sub-prefixes when ``delimiter`` is given)."""

        def call() -> tuple[list[ObjectInfo], list[str]]:
            bucket = self._bucket()
            found = bucket.client.list_blobs(
                bucket, prefix=prefix, delimiter=delimiter, timeout=self.timeout, retry=None
            )
            infos = [_info(blob) for blob in found]
            return infos, sorted(found.prefixes)

        return self._run("list", prefix or "/", call)

    # -- retries and errors -------------------------------------------------------------------

    def _run(self, operation: str, name: str, call: Callable[[], T]) -> T:
        retried: list[int] = []
        try:
            return retry(
                call,
                replace(RETRY, deadline=self.deadline),
                retryable=gcs.is_transient,
                on_retry=lambda _exc, n: retried.append(n),
            )
        except GaveUp as exc:
            target = f"gs://{self.name}/{name}"
            raise errors.gave_up(operation, target, self.deadline, gcs.describe(exc.last)) from exc
        except Exception as exc:
            code = gcs.status(exc)
            if code == 412:
                raise Precondition(name, bool(retried)) from None
            on_object = operation not in ("list", "create", "overwrite")  # a 404 names the object
            if code == 404 and on_object and "bucket does not exist" not in str(exc).lower():
                raise Missing(name, bool(retried)) from None
            failure = self._failure(operation, f"gs://{self.name}/{name}", exc)
            if failure is None:
                raise
            raise failure from exc

    def _failure(self, operation: str, target: str, exc: Exception) -> Exception | None:
        said = gcs.describe(exc)
        match gcs.problem(exc):
            case "missing":  # on a listing or an upload: the bucket itself
                return errors.missing_bucket(self.name)
            case "forbidden":
                return errors.forbidden(self.name, operation, target, said)
            case "credentials_rejected":
                return errors.credentials_rejected(self.name, said)
            case "no_credentials":
                return errors.no_credentials(str(exc))
            case "refused":
                return errors.refused(operation, target, said)
        return None  # not an answer from GCS: a bug, let it propagate


def _info(blob: Any) -> ObjectInfo:
    return ObjectInfo(
        name=str(blob.name),
        generation=int(blob.generation or 0),
        metageneration=int(blob.metageneration) if blob.metageneration is not None else None,
        size=int(blob.size or 0),
        updated=blob.updated,
        metadata=dict(blob.metadata or {}),
    )
