"""A fault-injecting reverse proxy in front of fake-gcs-server (stdlib only).

fake-gcs-server v1.54.0 honours ``ifGenerationMatch`` on multipart uploads but ignores request
preconditions everywhere else (DELETE, metadata GET/PATCH/PUT, downloads, copy/rewrite/compose,
simple media uploads and resumable uploads), and it never bumps ``metageneration`` when an
object's metadata is patched. Real GCS does all of that, and a lock or state backend that relies on
it would be tested against nothing. ``FaultProxy`` closes the gap:

* **Preconditions.** For every request on an object that carries ``ifGenerationMatch``,
  ``ifGenerationNotMatch``, ``ifMetagenerationMatch`` or ``ifMetagenerationNotMatch`` (and
  ``ifSource*`` for copy/rewrite, ``objectPreconditions`` for compose sources) the proxy looks up
  the live object in the emulator and answers itself when the condition fails: 412
  ``conditionNotMet`` (GCS-shaped JSON error body), or 304 for a read whose ``...NotMatch``
  condition fails, as GCS does. Reads, deletes and metadata updates of a missing object are
  forwarded (the emulator answers 404); writes that create an object (uploads, copy/rewrite and
  compose destinations) fail with 412 unless the only condition is ``ifGenerationMatch=0``.
  Resumable uploads: the conditions of the initiating POST are remembered by ``upload_id`` and
  re-checked before every data chunk. One lock serialises every mutating request and every
  check-then-forward pair, so the check is atomic with the request it guards. Only media
  downloads without preconditions are streamed outside the lock.
* **Metageneration.** The emulator keeps ``metageneration`` at 1 forever (PATCH/PUT do not bump
  it; PATCH/PUT responses do not even carry the field). The proxy counts successful metadata
  updates per ``(bucket, object, generation)`` and rewrites ``metageneration`` in every JSON
  object resource it passes on (object GET, list ``items``, PATCH/PUT, rewrite ``resource``...),
  and uses the same number for ``ifMetagenerationMatch``. Going around the proxy
  (``direct_url``) shows the emulator's own, never-bumped value.
* **Faults.** ``set_faults`` makes a fraction of the object requests (``/storage/v1/b/*/o...``,
  ``/upload/``, ``/download/``; never bucket operations) fail *without being forwarded* with a
  GCS-shaped 503/429/..., get delayed, have their connection reset before forwarding, or (an
  addition) be forwarded and applied but have the response lost (connection reset after the
  emulator answered, like a real network failure after commit).
* **Counters.** ``stats()`` and a bounded ``log`` of ``(method, path, query, status)``; status 0
  means the connection was closed without an answer.

The same proxy runs as a separate process::

    python -m tests.support.gcs_proxy --listen 127.0.0.1:0 --upstream http://127.0.0.1:P \
        --port-file F [--parent-pid PID]

with a control endpoint on the same port (``POST /__proxy/faults`` with a JSON body of
``set_faults`` arguments, ``POST /__proxy/clear``, ``GET /__proxy/stats``,
``POST /__proxy/reset_stats``, ``GET /__proxy/log``, ``GET /__proxy/health``). ``ProxyControl`` is
the client for it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypedDict, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

CONTROL_PREFIX = "/__proxy/"
LOG_LIMIT = 10_000
UPSTREAM_TIMEOUT = 120.0

PRECONDITIONS = (
    "ifGenerationMatch",
    "ifGenerationNotMatch",
    "ifMetagenerationMatch",
    "ifMetagenerationNotMatch",
)
SOURCE_PRECONDITIONS = {
    "ifSourceGenerationMatch": "ifGenerationMatch",
    "ifSourceGenerationNotMatch": "ifGenerationNotMatch",
    "ifSourceMetagenerationMatch": "ifMetagenerationMatch",
    "ifSourceMetagenerationNotMatch": "ifMetagenerationNotMatch",
}

_REASONS = {
    400: "invalid",
    401: "required",
    403: "forbidden",
    404: "notFound",
    408: "requestTimeout",
    409: "conflict",
    412: "conditionNotMet",
    429: "rateLimitExceeded",
    500: "backendError",
    502: "badGateway",
    503: "backendError",
    504: "gatewayTimeout",
}
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
_B = r"(?P<bucket>[^/]+)"
_O = r"(?P<object>[^/]+)"
_RE_OBJECT = re.compile(rf"^/storage/v1/b/{_B}/o/{_O}$")
_RE_DOWNLOAD = re.compile(rf"^/download/storage/v1/b/{_B}/o/{_O}$")
_RE_LIST = re.compile(rf"^/storage/v1/b/{_B}/o$")
_RE_UPLOAD = re.compile(rf"^/upload/storage/v1/b/{_B}/o$")
_RE_REWRITE = re.compile(
    rf"^/storage/v1/b/{_B}/o/{_O}/(?:rewriteTo|copyTo)/b/(?P<dbucket>[^/]+)/o/(?P<dobject>[^/]+)$"
)
_RE_COMPOSE = re.compile(rf"^/storage/v1/b/{_B}/o/{_O}/compose$")
_RE_FAULTABLE = re.compile(r"^(?:/storage/v1/b/[^/]+/o(?:/|$)|/upload/|/download/)")
_RE_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class LogEntry(NamedTuple):
    method: str
    path: str  # as sent by the client, still percent-encoded
    query: str  # raw query string, "" when none
    status: int  # the status the client got; 0 = connection closed without a response


class ProxyStats(TypedDict):
    requests: dict[str, int]  # by HTTP method, control requests excluded
    requests_total: int
    bytes_uploaded: int  # request bodies of uploads as received from clients
    bytes_downloaded: int  # media bodies (alt=media / /download/) sent to clients
    faults: int  # all injected faults, delays included
    faults_by_kind: dict[str, int]  # status, reset, lost_response, delay
    preconditions_failed: int  # 412/304 answered by the proxy itself


FaultKind = Literal["status", "reset", "lost_response", "delay"]
_FAULT_KINDS: tuple[FaultKind, ...] = ("status", "reset", "lost_response", "delay")


@dataclass(frozen=True)
class FaultConfig:
    """What ``set_faults`` installs. Probabilities are drawn per eligible request, in this order:
    ``delay_rate`` (independently), then exactly one of ``rate`` (answer one of ``statuses``
    without forwarding), ``reset_rate`` (close the connection before forwarding) or
    ``lost_response_rate`` (forward, then close the connection without answering)."""

    rate: float = 0.1
    statuses: tuple[int, ...] = (503, 429)
    delay: float = 0.0
    delay_rate: float = 0.0
    reset_rate: float = 0.0
    seed: int | None = 0
    only_methods: tuple[str, ...] | None = None
    lost_response_rate: float = 0.0
    object_regex: str | None = None  # re.search on the decoded object name; None = any request
    max_faults: int | None = None  # stop injecting after this many faults (delays included)

    def __post_init__(self) -> None:
        for name in ("rate", "delay_rate", "reset_rate", "lost_response_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
        if self.rate + self.reset_rate + self.lost_response_rate > 1.0 + 1e-9:
            raise ValueError("rate + reset_rate + lost_response_rate must not exceed 1")
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay!r}")
        statuses = tuple(int(s) for s in self.statuses)
        if self.rate > 0 and not statuses:
            raise ValueError("statuses must not be empty when rate > 0")
        if any(not 100 <= s <= 599 for s in statuses):
            raise ValueError(f"statuses must be HTTP status codes, got {statuses!r}")
        object.__setattr__(self, "statuses", statuses)
        if self.only_methods is not None:
            object.__setattr__(self, "only_methods", tuple(m.upper() for m in self.only_methods))
        if self.object_regex is not None:
            re.compile(self.object_regex)
        if self.max_faults is not None and self.max_faults < 0:
            raise ValueError("max_faults must be >= 0")

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        kwargs = dict(data)
        if kwargs.get("statuses") is not None:
            kwargs["statuses"] = tuple(kwargs["statuses"])
        if kwargs.get("only_methods") is not None:
            kwargs["only_methods"] = tuple(kwargs["only_methods"])
        return cls(**kwargs)


def make_fault_config(
    rate: float = 0.1,
    statuses: Iterable[int] = (503, 429),
    delay: float = 0.0,
    delay_rate: float = 0.0,
    reset_rate: float = 0.0,
    seed: int | None = 0,
    only_methods: Iterable[str] | None = None,
    *,
    lost_response_rate: float = 0.0,
    object_regex: str | None = None,
    max_faults: int | None = None,
) -> FaultConfig:
    return FaultConfig(
        rate=rate,
        statuses=tuple(statuses),
        delay=delay,
        delay_rate=delay_rate,
        reset_rate=reset_rate,
        seed=seed,
        only_methods=None if only_methods is None else tuple(only_methods),
        lost_response_rate=lost_response_rate,
        object_regex=object_regex,
        max_faults=max_faults,
    )


def gcs_error_body(status: int, message: str | None = None) -> bytes:
    """A JSON error body shaped like the ones GCS sends."""
    text = message or http.client.responses.get(status, "Error")
    reason = _REASONS.get(status, "backendError" if status >= 500 else "invalid")
    error: dict[str, Any] = {"domain": "global", "reason": reason, "message": text}
    if status == 412:
        error.update(locationType="header", location="If-Match")
    body = {"error": {"code": status, "message": text, "errors": [error]}}
    return json.dumps(body).encode()


@dataclass
class _Fault:
    kind: Literal["none", "status", "reset", "lost_response"] = "none"
    status: int = 0
    delay: float = 0.0


@dataclass
class _Target:
    """What a request is about, as far as preconditions and faults are concerned."""

    kind: Literal[
        "object", "download", "list", "upload", "upload_chunk", "rewrite", "compose", "other"
    ] = "other"
    bucket: str | None = None
    name: str | None = None  # decoded object name
    upload_id: str | None = None


@dataclass
class _Session:
    bucket: str
    name: str
    conditions: dict[str, int]


class _Response(NamedTuple):
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class _UpstreamUnavailable(Exception):
    pass


def _first(params: Mapping[str, list[str]], key: str) -> str | None:
    values = params.get(key)
    return values[0] if values else None


def _conditions(params: Mapping[str, list[str]], names: Iterable[str]) -> dict[str, int] | None:
    """The integer preconditions among ``names``; None when one of them is not an integer."""
    out: dict[str, int] = {}
    for name in names:
        value = _first(params, name)
        if value is None:
            continue
        try:
            out[name] = int(value)
        except ValueError:
            return None
    return out


def evaluate_preconditions(
    conditions: Mapping[str, int],
    live: Mapping[str, Any] | None,
    *,
    creating: bool,
    read: bool,
) -> int | None:
    """The status GCS answers when ``conditions`` fail against ``live`` (None: they hold, or the
    request should go on so that the emulator answers 404 for a missing object)."""
    if not conditions:
        return None
    if live is None:
        if not creating:
            return None
        for name, value in conditions.items():
            if name == "ifGenerationMatch" and value == 0:
                continue
            if name == "ifMetagenerationNotMatch":
                continue
            return 412
        return None
    generation = int(live.get("generation") or 0)
    metageneration = int(live.get("metageneration") or 1)
    not_modified = False
    for name, value in conditions.items():
        if name == "ifGenerationMatch" and generation != value:
            return 412
        if name == "ifMetagenerationMatch" and metageneration != value:
            return 412
        if name == "ifGenerationNotMatch" and generation == value:
            not_modified = True
        if name == "ifMetagenerationNotMatch" and metageneration == value:
            not_modified = True
    if not_modified:
        return 304 if read else 412
    return None


def _multipart_metadata(content_type: str, body: bytes) -> dict[str, Any] | None:
    """The JSON metadata part (the first part) of a ``multipart/related`` upload body."""
    match = _RE_BOUNDARY.search(content_type)
    if not match:
        return None
    boundary = b"--" + match.group(1).encode()
    start = body.find(boundary)
    if start < 0:
        return None
    header_end = body.find(b"\r\n\r\n", start)
    if header_end < 0:
        return None
    end = body.find(b"\r\n" + boundary, header_end)
    if end < 0:
        return None
    try:
        data = json.loads(body[header_end + 4 : end])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class FaultProxy:
    """The proxy, in-process: ``FaultProxy(upstream).start()``; ``.url`` is what clients use."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0) -> None:
        if not _is_loopback(host):
            raise ValueError(f"the proxy binds to loopback only, not {host!r}")
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must look like http://127.0.0.1:PORT, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self._server = _ProxyServer((host, port), _Handler, self)
        self._thread: threading.Thread | None = None

        self.lock = threading.RLock()  # serialises mutations and check-then-forward pairs
        self._metagenerations: dict[tuple[str, str, str], int] = {}
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

        self._fault_lock = threading.Lock()
        self._faults: FaultConfig | None = None
        self._rng = random.Random(0)
        self._injected_since_set = 0

        self._stats_lock = threading.Lock()
        self._log: deque[LogEntry] = deque(maxlen=LOG_LIMIT)
        self._requests: dict[str, int] = {}
        self._bytes_uploaded = 0
        self._bytes_downloaded = 0
        self._faults_by_kind: dict[str, int] = dict.fromkeys(_FAULT_KINDS, 0)
        self._preconditions_failed = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"gcs-fault-proxy-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------------

    def set_faults(
        self,
        rate: float = 0.1,
        statuses: Iterable[int] = (503, 429),
        delay: float = 0.0,
        delay_rate: float = 0.0,
        reset_rate: float = 0.0,
        seed: int | None = 0,
        only_methods: Iterable[str] | None = None,
        *,
        lost_response_rate: float = 0.0,
        object_regex: str | None = None,
        max_faults: int | None = None,
    ) -> None:
        self.apply_fault_config(
            make_fault_config(
                rate,
                statuses,
                delay,
                delay_rate,
                reset_rate,
                seed,
                only_methods,
                lost_response_rate=lost_response_rate,
                object_regex=object_regex,
                max_faults=max_faults,
            )
        )

    def apply_fault_config(self, config: FaultConfig | None) -> None:
        with self._fault_lock:
            self._faults = config
            self._injected_since_set = 0
            self._rng = random.Random(config.seed if config is not None else 0)

    def clear_faults(self) -> None:
        self.apply_fault_config(None)

    @property
    def faults(self) -> FaultConfig | None:
        return self._faults

    def _draw_fault(self, method: str, path: str, target: _Target) -> _Fault:
        with self._fault_lock:
            config = self._faults
            if config is None or not _RE_FAULTABLE.match(path):
                return _Fault()
            if config.only_methods is not None and method not in config.only_methods:
                return _Fault()
            if config.object_regex is not None and (
                target.name is None or not re.search(config.object_regex, target.name)
            ):
                return _Fault()
            if config.max_faults is not None and self._injected_since_set >= config.max_faults:
                return _Fault()
            rng = self._rng
            delay_draw, fault_draw, status_index = rng.random(), rng.random(), rng.random()
            fault = _Fault()
            injected: list[FaultKind] = []
            if config.delay > 0 and delay_draw < config.delay_rate:
                fault.delay = config.delay
                injected.append("delay")
            if fault_draw < config.rate:
                fault.kind = "status"
                fault.status = config.statuses[int(status_index * len(config.statuses))]
            elif fault_draw < config.rate + config.reset_rate:
                fault.kind = "reset"
            elif fault_draw < config.rate + config.reset_rate + config.lost_response_rate:
                fault.kind = "lost_response"
            if fault.kind != "none":
                injected.append(fault.kind)
            if config.max_faults is not None:
                room = config.max_faults - self._injected_since_set
                if len(injected) > room:  # a delay and a failure, with room for one: keep failure
                    injected = injected[-room:] if room else []
                    if "delay" not in injected:
                        fault.delay = 0.0
            self._injected_since_set += len(injected)
        with self._stats_lock:
            for kind in injected:
                self._faults_by_kind[kind] += 1
        return fault

    # -- stats -------------------------------------------------------------------------------

    def stats(self) -> ProxyStats:
        with self._stats_lock:
            return ProxyStats(
                requests=dict(self._requests),
                requests_total=sum(self._requests.values()),
                bytes_uploaded=self._bytes_uploaded,
                bytes_downloaded=self._bytes_downloaded,
                faults=sum(self._faults_by_kind.values()),
                faults_by_kind=dict(self._faults_by_kind),
                preconditions_failed=self._preconditions_failed,
            )

    def reset_stats(self) -> None:
        """Zero the counters and empty the log."""
        with self._stats_lock:
            self._requests = {}
            self._bytes_uploaded = 0
            self._bytes_downloaded = 0
            self._faults_by_kind = dict.fromkeys(_FAULT_KINDS, 0)
            self._preconditions_failed = 0
            self._log.clear()

    @property
    def log(self) -> list[LogEntry]:
        """A snapshot of the last ``LOG_LIMIT`` requests, oldest first."""
        with self._stats_lock:
            return list(self._log)

    def _count_request(self, method: str, uploaded: int) -> None:
        with self._stats_lock:
            self._requests[method] = self._requests.get(method, 0) + 1
            self._bytes_uploaded += uploaded

    def _record(self, method: str, path: str, query: str, status: int, downloaded: int) -> None:
        with self._stats_lock:
            self._log.append(LogEntry(method, path, query, status))
            self._bytes_downloaded += downloaded

    def _record_download(self, size: int) -> None:
        with self._stats_lock:
            self._bytes_downloaded += size

    def _count_precondition_failure(self) -> None:
        with self._stats_lock:
            self._preconditions_failed += 1

    # -- metageneration emulation (call with self.lock held) ---------------------------------

    def _fix_object(self, resource: Any, *, bumped: bool = False) -> bool:
        """Rewrite ``metageneration`` of one object resource; bump it first if ``bumped``."""
        if not isinstance(resource, dict):
            return False
        bucket, name, generation = (
            resource.get("bucket"),
            resource.get("name"),
            resource.get("generation"),
        )
        if not (isinstance(bucket, str) and isinstance(name, str) and generation is not None):
            return False
        key = (bucket, name, str(generation))
        reported = int(resource.get("metageneration") or 0)  # the emulator's: 1 or absent
        if bumped:  # (should a later emulator bump it itself, its number wins; no double count)
            value = max(self._metagenerations.get(key, 1) + 1, reported)
            self._metagenerations[key] = value
        else:
            value = max(self._metagenerations.get(key, 1), reported)
        if resource.get("metageneration") == str(value):
            return False
        resource["metageneration"] = str(value)
        return True

    def _rewrite_json(self, body: bytes, *, bumped: bool = False) -> bytes:
        if not body or (not self._metagenerations and not bumped):
            return body
        try:
            data = json.loads(body)
        except ValueError:
            return body
        if not isinstance(data, dict):
            return body
        changed = self._fix_object(data, bumped=bumped)
        items = data.get("items")
        if isinstance(items, list):
            for item in items:
                changed = self._fix_object(item) or changed
        changed = self._fix_object(data.get("resource")) or changed
        if not changed:
            return body
        return json.dumps(data, separators=(",", ":")).encode() + b"\n"


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], proxy: FaultProxy
    ) -> None:
        self.proxy = proxy
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    _upstream: http.client.HTTPConnection | None = None

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def proxy(self) -> FaultProxy:
        return cast(_ProxyServer, self.server).proxy

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("client closed the connection mid-body")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _abort(self) -> None:
        """Close the client connection abruptly (RST), without any response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            os.close(self.connection.detach())

    def _send(self, response: _Response, *, head: bool = False) -> int:
        status, reason, headers, body = response
        self.send_response_only(status, reason)
        has_body = status >= 200 and status not in (204, 304)
        for key, value in headers:
            lower = key.lower()
            if lower in _HOP_BY_HOP or (lower == "content-length" and not head):
                continue
            self.send_header(key, value)
        if has_body and not head:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if has_body and not head and body:
            self.wfile.write(body)
            return len(body)
        return 0

    def _local(self, status: int, body: bytes | None = None) -> _Response:
        headers = [("Date", self.date_time_string())]
        if status == 304:
            return _Response(status, "Not Modified", headers, b"")
        headers.append(("Content-Type", "application/json; charset=UTF-8"))
        reason = http.client.responses.get(status, "Error")
        return _Response(
            status, reason, headers, body if body is not None else gcs_error_body(status)
        )

    # -- upstream ----------------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        proxy = self.proxy
        conn = http.client.HTTPConnection(
            proxy.upstream_host, proxy.upstream_port, timeout=UPSTREAM_TIMEOUT
        )
        try:
            conn.connect()
        except OSError as exc:
            raise _UpstreamUnavailable(str(exc)) from exc
        with contextlib.suppress(OSError):
            assert conn.sock is not None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _open(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> http.client.HTTPResponse:
        for attempt in range(2):
            reused = self._upstream is not None
            conn = self._upstream if self._upstream is not None else self._connect()
            self._upstream = conn
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for key, value in headers:
                    conn.putheader(key, value)
                if body or method in ("POST", "PUT", "PATCH"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body if body else None)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                # A kept-alive connection the emulator closed while idle: one retry on a new one.
                conn.close()
                self._upstream = None
                if not reused or attempt:
                    raise _UpstreamUnavailable(str(exc) or type(exc).__name__) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._upstream = None
                raise _UpstreamUnavailable(str(exc) or type(exc).__name__) from exc
        raise AssertionError("unreachable")

    def _done_with(self, resp: http.client.HTTPResponse) -> None:
        if resp.will_close and self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _forward_buffered(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> _Response:
        resp = self._open(method, target, headers, body)
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None
            raise _UpstreamUnavailable(str(exc) or type(exc).__name__) from exc
        self._done_with(resp)
        return _Response(resp.status, resp.reason, resp.getheaders(), data)

    def _lookup(self, bucket: str, name: str, generation: str | None) -> dict[str, Any] | None:
        """The live object's metadata as the proxy shows it (emulated metageneration)."""
        target = f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
        if generation:
            target += f"?generation={quote(generation, safe='')}"
        host = f"{self.proxy.upstream_host}:{self.proxy.upstream_port}"
        response = self._forward_buffered("GET", target, [("Host", host)], b"")
        if response.status != 200:
            return None
        try:
            data = json.loads(response.body)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        self.proxy._fix_object(data)
        return data

    # -- the request -------------------------------------------------------------------------

    def _handle(self) -> None:
        split = urlsplit(self.path)
        path, query = split.path, split.query
        if path.startswith(CONTROL_PREFIX):
            self._control(path)
            return
        proxy = self.proxy
        method = self.command
        try:
            body = self._read_body()
        except (ValueError, ConnectionError):
            self.close_connection = True
            self._send(self._local(400, gcs_error_body(400, "malformed request body")))
            return
        params = parse_qs(query, keep_blank_values=True)
        target = self._classify(method, path, params, body)
        uploaded = len(body) if target.kind in ("upload", "upload_chunk") else 0
        proxy._count_request(method, uploaded)

        fault = proxy._draw_fault(method, path, target)
        if fault.kind == "status":
            # Record before answering: a client that saw the answer finds it in the log.
            proxy._record(method, path, query, fault.status, 0)
            self._send(self._local(fault.status), head=method == "HEAD")
            return
        if fault.kind == "reset":
            proxy._record(method, path, query, 0, 0)
            self._abort()
            return
        if fault.delay:
            time.sleep(fault.delay)

        headers = [
            (k, v)
            for k, v in self.headers.items()
            if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
        ]
        connection_tokens = {
            t.strip().lower() for t in self.headers.get("Connection", "").split(",") if t.strip()
        }
        headers = [(k, v) for k, v in headers if k.lower() not in connection_tokens]
        is_media = target.kind == "download" or (
            target.kind == "object" and _first(params, "alt") == "media"
        )
        has_conditions = self._has_conditions(target, params)
        try:
            if method in ("GET", "HEAD") and is_media and not has_conditions:
                if fault.kind == "lost_response":
                    response = self._forward_buffered(method, self.path, headers, body)
                else:
                    self._stream(method, self.path, headers, body, path, query)
                    return
            elif method in _MUTATING or target.kind not in ("other",):
                with proxy.lock:
                    response = self._guarded(method, target, params, headers, body, has_conditions)
            else:
                response = self._forward_buffered(method, self.path, headers, body)
        except _UpstreamUnavailable as exc:
            self.close_connection = True
            response = self._local(502, gcs_error_body(502, f"upstream unavailable: {exc}"))
        if fault.kind == "lost_response":
            proxy._record(method, path, query, 0, 0)
            self._abort()
            return
        ok = 200 <= response.status < 300
        has_body = method != "HEAD" and response.status >= 200 and response.status not in (204, 304)
        sent = len(response.body) if has_body else 0
        # Record before answering: a client that saw the answer finds it in the log.
        proxy._record(method, path, query, response.status, sent if is_media and ok else 0)
        self._send(response, head=method == "HEAD")

    def _classify(
        self, method: str, path: str, params: Mapping[str, list[str]], body: bytes
    ) -> _Target:
        match = _RE_OBJECT.match(path)
        if match:
            return _Target("object", unquote(match["bucket"]), unquote(match["object"]))
        match = _RE_DOWNLOAD.match(path)
        if match:
            return _Target("download", unquote(match["bucket"]), unquote(match["object"]))
        match = _RE_LIST.match(path)
        if match:
            return _Target("list", unquote(match["bucket"]))
        match = _RE_REWRITE.match(path)
        if match:
            return _Target("rewrite", unquote(match["dbucket"]), unquote(match["dobject"]))
        match = _RE_COMPOSE.match(path)
        if match:
            return _Target("compose", unquote(match["bucket"]), unquote(match["object"]))
        match = _RE_UPLOAD.match(path)
        if match:
            bucket = unquote(match["bucket"])
            upload_id = _first(params, "upload_id")
            if upload_id:
                with self.proxy.lock:
                    session = self.proxy._sessions.get(upload_id)
                name = session.name if session else _first(params, "name")
                return _Target("upload_chunk", bucket, name, upload_id)
            name = _first(params, "name")
            if name is None and body:
                metadata: dict[str, Any] | None = None
                content_type = self.headers.get("Content-Type", "")
                if content_type.lower().startswith("multipart/"):
                    metadata = _multipart_metadata(content_type, body)
                elif "json" in content_type.lower():
                    with contextlib.suppress(ValueError):
                        loaded = json.loads(body)
                        metadata = loaded if isinstance(loaded, dict) else None
                if metadata and isinstance(metadata.get("name"), str):
                    name = metadata["name"]
            return _Target("upload", bucket, name)
        return _Target()

    def _has_conditions(self, target: _Target, params: Mapping[str, list[str]]) -> bool:
        """Whether the request carries any precondition the proxy has to check."""
        if target.kind == "upload_chunk":
            with self.proxy.lock:
                session = self.proxy._sessions.get(target.upload_id or "")
            return bool(session and session.conditions)
        if target.kind == "compose":
            return True  # source preconditions live in the body
        names = list(PRECONDITIONS)
        if target.kind == "rewrite":
            names += list(SOURCE_PRECONDITIONS)
        return any(name in params for name in names)

    def _guarded(
        self,
        method: str,
        target: _Target,
        params: Mapping[str, list[str]],
        headers: list[tuple[str, str]],
        body: bytes,
        has_conditions: bool,
    ) -> _Response:
        """Check preconditions, forward, post-process; called with the proxy lock held."""
        proxy = self.proxy
        if has_conditions:
            verdict = self._check(method, target, params, body)
            if verdict is not None:
                proxy._count_precondition_failure()
                return self._local(verdict)
        response = self._forward_buffered(method, self.path, headers, body)
        content_type = dict((k.lower(), v) for k, v in response.headers).get("content-type", "")
        data = response.body
        ok = 200 <= response.status < 300
        bumped = ok and target.kind == "object" and method in ("PATCH", "PUT")
        if "json" in content_type and ok and target.kind != "other":
            data = proxy._rewrite_json(data, bumped=bumped)
        if target.kind == "upload" and ok and _first(params, "uploadType") == "resumable":
            self._remember_session(target, params, response.headers)
        if target.kind == "upload_chunk" and ok and target.upload_id:
            proxy._sessions.pop(target.upload_id, None)
        return response._replace(body=data)

    def _remember_session(
        self, target: _Target, params: Mapping[str, list[str]], headers: list[tuple[str, str]]
    ) -> None:
        conditions = _conditions(params, PRECONDITIONS) or {}
        location = next((v for k, v in headers if k.lower() == "location"), None)
        if not location or not conditions or not target.bucket:
            return
        location_params = parse_qs(urlsplit(location).query)
        upload_id = _first(location_params, "upload_id")
        name = target.name or _first(location_params, "name")
        if not upload_id or not name:
            return
        sessions = self.proxy._sessions
        sessions[upload_id] = _Session(target.bucket, name, conditions)
        while len(sessions) > LOG_LIMIT:
            sessions.popitem(last=False)

    def _check(
        self, method: str, target: _Target, params: Mapping[str, list[str]], body: bytes
    ) -> int | None:
        read = method in ("GET", "HEAD")
        if target.kind in ("object", "download") and target.bucket and target.name:
            conditions = _conditions(params, PRECONDITIONS)
            if not conditions:
                return None
            live = self._lookup(target.bucket, target.name, _first(params, "generation"))
            return evaluate_preconditions(conditions, live, creating=False, read=read)
        if target.kind == "upload" and target.bucket and target.name:
            conditions = _conditions(params, PRECONDITIONS)
            if not conditions:
                return None
            live = self._lookup(target.bucket, target.name, None)
            return evaluate_preconditions(conditions, live, creating=True, read=False)
        if target.kind == "upload_chunk" and target.upload_id:
            if self.headers.get("Content-Range", "").replace(" ", "") == "bytes*/*":
                return None  # a status query, not data
            session = self.proxy._sessions.get(target.upload_id)
            if session is None:
                return None
            live = self._lookup(session.bucket, session.name, None)
            return evaluate_preconditions(session.conditions, live, creating=True, read=False)
        if target.kind == "rewrite" and target.bucket and target.name:
            match = _RE_REWRITE.match(urlsplit(self.path).path)
            assert match is not None
            source = _conditions(params, SOURCE_PRECONDITIONS)
            if source:
                renamed = {SOURCE_PRECONDITIONS[k]: v for k, v in source.items()}
                live = self._lookup(
                    unquote(match["bucket"]),
                    unquote(match["object"]),
                    _first(params, "sourceGeneration"),
                )
                verdict = evaluate_preconditions(renamed, live, creating=False, read=False)
                if verdict is not None:
                    return verdict
            conditions = _conditions(params, PRECONDITIONS)
            if conditions:
                live = self._lookup(target.bucket, target.name, None)
                return evaluate_preconditions(conditions, live, creating=True, read=False)
            return None
        if target.kind == "compose" and target.bucket and target.name:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                request = json.loads(body) if body else {}
                for source in request.get("sourceObjects") or []:
                    wanted = (source.get("objectPreconditions") or {}).get("ifGenerationMatch")
                    if wanted is None:
                        continue
                    live = self._lookup(target.bucket, source["name"], source.get("generation"))
                    if live is None or int(live.get("generation") or 0) != int(wanted):
                        return 412
            conditions = _conditions(params, PRECONDITIONS)
            if conditions:
                live = self._lookup(target.bucket, target.name, None)
                return evaluate_preconditions(conditions, live, creating=True, read=False)
        return None

    def _stream(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        path: str,
        query: str,
    ) -> None:
        """Forward a media download and stream the body back without buffering it."""
        resp = self._open(method, target, headers, body)
        length = resp.getheader("Content-Length")
        head = method == "HEAD" or resp.status in (204, 304) or resp.status < 200
        chunked = not head and length is None and self.request_version == "HTTP/1.1"
        if not head and length is None and not chunked:
            self.close_connection = True
        self.send_response_only(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() in _HOP_BY_HOP:
                continue
            self.send_header(key, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        if self.close_connection:
            self.send_header("Connection", "close")
        # Record (and count each chunk) before the client can see it, so a client that has its
        # answer always finds it in the log and the byte counts.
        ok = 200 <= resp.status < 300
        self.proxy._record(method, path, query, resp.status, 0)
        self.end_headers()
        sent = 0
        try:
            while not head:
                chunk = resp.read(256 * 1024)
                if not chunk:
                    break
                if ok:
                    self.proxy._record_download(len(chunk))
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                else:
                    self.wfile.write(chunk)
                sent += len(chunk)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException):
            # Either side broke mid-body; the status line is gone, so all that is left is to
            # drop both connections (the client sees a short body).
            self.close_connection = True
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None
            return
        self._done_with(resp)

    # -- control endpoint --------------------------------------------------------------------

    def _control(self, path: str) -> None:
        proxy = self.proxy
        action = path[len(CONTROL_PREFIX) :].strip("/")
        try:
            raw = self._read_body()
            payload: Any = json.loads(raw) if raw.strip() else {}
            result: Any
            if action == "faults" and self.command == "POST":
                if not isinstance(payload, dict):
                    raise ValueError("the body must be a JSON object of set_faults arguments")
                proxy.apply_fault_config(FaultConfig.from_json(payload))
                result = {"ok": True}
            elif action == "faults" and self.command == "GET":
                config = proxy.faults
                result = None if config is None else config.to_json()
            elif action == "clear" and self.command == "POST":
                proxy.clear_faults()
                result = {"ok": True}
            elif action == "stats" and self.command == "GET":
                result = proxy.stats()
            elif action in ("reset_stats", "stats") and self.command in ("POST", "DELETE"):
                proxy.reset_stats()
                result = {"ok": True}
            elif action == "log" and self.command == "GET":
                result = [list(entry) for entry in proxy.log]
            elif action == "health" and self.command == "GET":
                result = {"ok": True, "upstream": proxy.upstream}
            else:
                self._send(self._local(404, gcs_error_body(404, f"no control action {path}")))
                return
        except (ValueError, TypeError) as exc:
            self._send(self._local(400, gcs_error_body(400, str(exc))))
            return
        data = json.dumps(result).encode()
        self._send(self._local(200, data))


class ProxyControl:
    """Drives a ``FaultProxy`` through its control endpoint (works across processes)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, action: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.url}{CONTROL_PREFIX}{action}",
            data=data if data is not None else (b"" if method == "POST" else None),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise RuntimeError(f"proxy control {method} {action}: {exc.code} {detail}") from exc

    def set_faults(
        self,
        rate: float = 0.1,
        statuses: Iterable[int] = (503, 429),
        delay: float = 0.0,
        delay_rate: float = 0.0,
        reset_rate: float = 0.0,
        seed: int | None = 0,
        only_methods: Iterable[str] | None = None,
        *,
        lost_response_rate: float = 0.0,
        object_regex: str | None = None,
        max_faults: int | None = None,
    ) -> None:
        config = make_fault_config(
            rate,
            statuses,
            delay,
            delay_rate,
            reset_rate,
            seed,
            only_methods,
            lost_response_rate=lost_response_rate,
            object_regex=object_regex,
            max_faults=max_faults,
        )  # validates here, so mistakes raise ValueError in the caller
        self._call("POST", "faults", config.to_json())

    def clear_faults(self) -> None:
        self._call("POST", "clear")

    @contextlib.contextmanager
    def faults(self, **kwargs: Any) -> Iterator[None]:
        """``with proxy.faults(rate=1.0): ...`` — faults on inside the block, cleared after."""
        self.set_faults(**kwargs)
        try:
            yield
        finally:
            self.clear_faults()

    def current_faults(self) -> FaultConfig | None:
        data = self._call("GET", "faults")
        return None if data is None else FaultConfig.from_json(data)

    def stats(self) -> ProxyStats:
        return cast(ProxyStats, self._call("GET", "stats"))

    def reset_stats(self) -> None:
        """Zero the counters and empty the log."""
        self._call("POST", "reset_stats")

    def log(self) -> list[LogEntry]:
        return [LogEntry(*entry) for entry in self._call("GET", "log")]

    def healthy(self) -> bool:
        try:
            return bool(self._call("GET", "health").get("ok"))
        except (OSError, RuntimeError, ValueError):
            return False


def _watch_parent(pid: int) -> None:
    while True:
        time.sleep(0.5)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass
        if os.getppid() != pid:
            os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.gcs_proxy")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (loopback only)")
    parser.add_argument("--upstream", required=True, help="the emulator, http://127.0.0.1:PORT")
    parser.add_argument("--port-file", type=Path, help="write the bound port here (atomically)")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    proxy = FaultProxy(args.upstream, host=host or "127.0.0.1", port=int(port or 0))
    if args.port_file is not None:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(f"{proxy.port}\n", encoding="utf-8")
        tmp.replace(args.port_file)
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    print(f"gcs fault proxy on {proxy.url} -> {proxy.upstream}", file=sys.stderr, flush=True)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy._server.server_close()
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main())
