"""The GCS client set-up and error classification, used by the state backend and the artifact
store alike (an import-linter contract lets only the GCS modules import the Google Cloud SDK).

Contracts:

- ``make_client()`` builds an SDK client: with ``STORAGE_EMULATOR_HOST`` set, an anonymous client
  on that endpoint (project ``substratus``); otherwise Application Default Credentials, raising
  the SDK's ``DefaultCredentialsError`` when there are none (each caller says so in its terms).
  It does no request. ``emulator_endpoint()`` is that endpoint's URL, ``None`` without one.
- ``is_transient(exc)``: worth retrying (429, 408, 5xx, connection errors and resets, timeouts, a
  download whose checksum did not match). Retrying is the caller's, with ``engine.backoff`` and
  ``REQUESTS`` (0.1 s doubling to at most 5 s; the deadline is the caller's). ``sdk_retry(policy)``
  is the same policy for the SDK calls that retry by themselves (the artifact store's uploads and
  downloads, whose resumable and checksummed transfers the SDK retries piecewise).
- ``status(exc)``: the HTTP status of an error answer (the API layer's or the media layer's).
- ``problem(exc)``: what a non-transient error means for the user — ``"missing"`` (404),
  ``"forbidden"`` (403), ``"credentials_rejected"`` (401, a failed token refresh),
  ``"no_credentials"``, ``"refused"`` (any other error answer) — or ``None`` when it is not an
  answer from GCS (a bug). ``describe(exc)`` is its one-line text.
"""

from __future__ import annotations

import http.client
import os
from typing import Any, Literal

import requests
import urllib3
from google.api_core import exceptions as api
from google.auth import exceptions as auth
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.cloud.storage.retry import DEFAULT_RETRY

from substratus.engine.backoff import Backoff

REQUESTS = Backoff(first=0.1, maximum=5.0)
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
EMULATOR_PROJECT = "substratus"
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
Problem = Literal["missing", "forbidden", "credentials_rejected", "no_credentials", "refused"]


def emulator_endpoint() -> str | None:
    """The URL of the emulator named by ``STORAGE_EMULATOR_HOST``, None without one."""
    host = os.environ.get(EMULATOR_ENV, "").strip()
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def make_client() -> Any:
    """An SDK client: the emulator's when ``STORAGE_EMULATOR_HOST`` is set, else ADC."""
    if endpoint := emulator_endpoint():
        return storage.Client(
            project=EMULATOR_PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
    return storage.Client()


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


def problem(exc: BaseException) -> Problem | None:
    """What a (non-transient) error means for the user; ``None``: not an answer from GCS."""
    code = status(exc)
    if code == 404:
        return "missing"
    if code == 403:
        return "forbidden"
    if code == 401 or isinstance(exc, auth.RefreshError):
        return "credentials_rejected"
    if isinstance(exc, auth.DefaultCredentialsError):
        return "no_credentials"
    return "refused" if code is not None else None


def describe(exc: BaseException) -> str:
    """One line for the user: the answer's code and message, else the exception."""
    if isinstance(exc, api.GoogleAPICallError):
        return f"{exc.code} {exc.message}".strip()
    return f"{type(exc).__name__}: {exc}"


def sdk_retry(policy: Backoff) -> Any:
    """The SDK's retry (its own predicate for transient errors) with ``policy``'s delays and
    deadline (the SDK adds its own jitter)."""
    return DEFAULT_RETRY.with_delay(
        initial=policy.first, maximum=policy.maximum, multiplier=policy.multiplier
    ).with_timeout(policy.deadline)
