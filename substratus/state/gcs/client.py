"""The one module that imports the Google Cloud SDK (an import-linter contract enforces it).

``Bucket`` is the narrow, typed surface the GCS state backend uses on one bucket: ``download``,
``stat``, ``create`` (always with a generation precondition), ``delete``, ``patch_metadata`` and
``list_objects``. Contracts:

- The SDK client is made on first use (building a backend does no I/O), one per ``Bucket`` (the
  SDK's HTTP session is not shared between threads). ``STORAGE_EMULATOR_HOST`` set: an anonymous
  client on that endpoint (project ``substratus``); otherwise Application Default Credentials.
- Transient failures (429, 500, 502, 503, 504, connection errors and resets, timeouts) are
  retried with exponential backoff and full jitter (google-api-core ``Retry``: first delay up to
  0.1 s, doubling to at most 5 s) until ``deadline`` seconds have passed; each request has its
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

import http.client
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import requests
import urllib3
from google.api_core import exceptions as api
from google.api_core.retry import Retry
from google.auth import exceptions as auth
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.exceptions import (
    DataCorruption,
    InvalidResponse,
)

from substratus.state.gcs import errors

T = TypeVar("T")
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
EMULATOR_PROJECT = "substratus"
FIRST_DELAY_S = 0.1
MAX_DELAY_S = 5.0
TRANSIENT = (
    api.TooManyRequests,
    api.InternalServerError,
    api.BadGateway,
    api.ServiceUnavailable,
    api.GatewayTimeout,
    ConnectionError,  # includes ConnectionResetError
    TimeoutError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    http.client.HTTPException,  # IncompleteRead, BadStatusLine, RemoteDisconnected
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    auth.TransportError,
    DataCorruption,  # a download whose checksum did not match: read it again
)
TRANSIENT_STATUSES = (408, 429, 500, 502, 503, 504)


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


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT) or status(exc) in TRANSIENT_STATUSES


def status(exc: BaseException) -> int | None:
    """The HTTP status of an error answer (the API layer's or the media layer's), else ``None``."""
    if isinstance(exc, api.GoogleAPICallError):
        return int(exc.code) if exc.code is not None else None
    if isinstance(exc, InvalidResponse):
        code = getattr(getattr(exc, "response", None), "status_code", None)
        return int(code) if isinstance(code, int) else None
    return None


def make_client() -> Any:
    """An SDK client: the emulator's when ``STORAGE_EMULATOR_HOST`` is set, else ADC."""
    host = os.environ.get(EMULATOR_ENV, "").strip()
    try:
        if host:
            endpoint = host if "://" in host else f"http://{host}"
            return storage.Client(
                project=EMULATOR_PROJECT,
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": endpoint},
            )
        return storage.Client()
    except auth.DefaultCredentialsError as exc:
        raise errors.no_credentials(str(exc)) from None


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
        attempts: list[BaseException] = []
        retry = Retry(
            predicate=is_transient,
            initial=FIRST_DELAY_S,
            maximum=MAX_DELAY_S,
            multiplier=2.0,
            timeout=self.deadline,
            on_error=attempts.append,
        )
        try:
            return retry(call)()
        except Exception as exc:
            code, retried = status(exc), bool(attempts)
            if code == 412:
                raise Precondition(name, retried) from None
            on_object = operation not in ("list", "create", "overwrite")  # a 404 names the object
            if code == 404 and on_object and "bucket does not exist" not in str(exc).lower():
                raise Missing(name, retried) from None
            failure = self._failure(operation, f"gs://{self.name}/{name}", exc, code)
            if failure is None:
                raise
            raise failure from exc

    def _failure(
        self, operation: str, target: str, exc: Exception, code: int | None
    ) -> Exception | None:
        if isinstance(exc, api.RetryError):
            last = exc.cause if exc.cause is not None else exc
            return errors.gave_up(operation, target, self.deadline, _say(last))
        if code == 404:  # on a listing or an upload: the bucket itself
            return errors.missing_bucket(self.name)
        if code == 403:
            return errors.forbidden(self.name, operation, target, _say(exc))
        if code == 401 or isinstance(exc, auth.RefreshError):
            return errors.credentials_rejected(self.name, _say(exc))
        if isinstance(exc, auth.DefaultCredentialsError):
            return errors.no_credentials(str(exc))
        if code is not None:
            return errors.refused(operation, target, _say(exc))
        return None  # not an answer from GCS: a bug, let it propagate


def _say(exc: BaseException) -> str:
    if isinstance(exc, api.GoogleAPICallError):
        return f"{exc.code} {exc.message}".strip()
    return f"{type(exc).__name__}: {exc}"


def _info(blob: Any) -> ObjectInfo:
    return ObjectInfo(
        name=str(blob.name),
        generation=int(blob.generation or 0),
        metageneration=int(blob.metageneration) if blob.metageneration is not None else None,
        size=int(blob.size or 0),
        updated=blob.updated,
        metadata=dict(blob.metadata or {}),
    )
