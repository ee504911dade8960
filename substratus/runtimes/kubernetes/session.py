"""The notebook session on a cluster (``engine.session``): a local port forwarded to the
notebook pod's 8888, the token read from its Secret, and the files changed in ``/content``
reported by a watcher running in the pod.

- Port-forward: a listener on ``127.0.0.1:local_port`` (or the next free port of the 20 after
  it); each accepted connection opens its own port-forward through the API server (so a dropped
  forward only costs that connection; the next request reconnects), tried ``ATTEMPTS`` times
  with backoff.
- ``changes()``: ``python3 -c WATCHER_SCRIPT /content INTERVAL`` in the notebook container over
  ``exec``; its JSON lines are yielded as dicts; a dropped stream is reopened (bounded retries
  with backoff; the watcher's state file in the pod makes it resume without re-reporting).
- ``read_file(path)``: the file's bytes through ``exec`` (the watcher module's read script:
  base64 + SHA-256, verified; paths escaping ``/content`` are refused in the pod).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from substratus.engine.backoff import Backoff, GaveUp, retry
from substratus.engine.failure import Failure
from substratus.runtimes.contract import NOTEBOOK_PORT
from substratus.runtimes.kubernetes import streams
from substratus.runtimes.kubernetes.cluster import Cluster

ATTEMPTS = 4
RECONNECT = Backoff(first=0.5, maximum=4.0, attempts=ATTEMPTS)  # 0.5 s doubling, ±20 %
CONTAINER = "notebook"
PIDFILE = "/tmp/.substratus-nbwatch.pid"


def _listen(port: int) -> socket.socket:
    for candidate in range(port, port + 21):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(16)
        return sock
    raise Failure(f"ports {port}–{port + 20} are all in use on this machine", "Pass --port N.")


class KubeNotebookSession:
    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        pod: str,
        token: str,
        local_port: int,
        interval: float = 1.0,
    ) -> None:
        self.cluster, self.namespace, self.pod, self.interval = cluster, namespace, pod, interval
        self._closed = threading.Event()
        self._listener = _listen(local_port)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/?token={token}"
        self._exec: Any = None
        threading.Thread(target=self._accept, daemon=True).start()

    # -- port-forward ------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _open(self) -> tuple[Any, socket.socket]:
        def once() -> tuple[Any, socket.socket]:
            pf = streams.portforward(self.cluster, self.namespace, self.pod, NOTEBOOK_PORT)
            return pf, pf.socket(NOTEBOOK_PORT)

        try:
            return retry(
                once,
                RECONNECT,
                retryable=lambda e: isinstance(e, Failure | OSError) and not self._closed.is_set(),
            )
        except GaveUp as exc:
            raise exc.last from None

    def _relay(self, conn: socket.socket) -> None:
        try:
            pf, remote = self._open()
        except (Failure, OSError):
            conn.close()
            return
        remote.setblocking(True)
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select([conn, remote], [], [], 0.5)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (remote if src is conn else conn).sendall(data)
        except OSError:
            return
        finally:
            conn.close()
            with contextlib.suppress(Exception):
                pf.close()

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api", timeout=5) as r:
                return int(r.status) < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except (urllib.error.URLError, OSError):
            return False

    # -- sync ----------------------------------------------------------------------------------

    def changes(self) -> Iterator[dict[str, Any]] | None:
        return self._watch()

    def _watch(self) -> Iterator[dict[str, Any]]:
        from substratus.notebook.watcher import watcher_command

        # its pid is kept in the pod: closing an exec stream does not stop the command there
        # (the API server keeps the node's end open), so ``close`` kills it by that pid
        command = [
            "sh",
            "-c",
            f'echo $$ > {PIDFILE}; exec "$@"',
            "sh",
            *watcher_command("/content", self.interval),
        ]
        failures = 0
        while not self._closed.is_set():
            try:
                self._exec = streams.exec_stream(
                    self.cluster, self.namespace, self.pod, CONTAINER, command
                )
            except Failure as exc:
                failures += 1
                if failures >= ATTEMPTS:
                    yield {"op": "error", "path": "", "detail": exc.summary}
                    return
                time.sleep(RECONNECT.delay(failures))
                continue
            buffer = ""
            while not self._closed.is_set() and self._exec.is_open():
                self._exec.update(timeout=1)
                if self._exec.peek_stdout():
                    buffer += self._exec.read_stdout()
                    *lines, buffer = buffer.split("\n")
                    for line in lines:
                        with contextlib.suppress(ValueError):
                            failures = 0
                            yield json.loads(line)
            if not self._closed.is_set():  # the stream dropped: reopen it
                failures += 1
                if failures >= ATTEMPTS:
                    yield {"op": "error", "path": "", "detail": "the file watcher keeps stopping"}
                    return
                time.sleep(RECONNECT.delay(failures))

    def read_file(self, path: str) -> bytes:
        from substratus.notebook.watcher import decode_read_output, read_command

        for _ in range(2):  # once more if the file changed while it was read
            out = streams.exec_output(
                self.cluster, self.namespace, self.pod, CONTAINER, read_command(path)
            )
            with contextlib.suppress(ValueError):
                return decode_read_output(out.encode())
        raise Failure(f"could not read /content/{path} from the notebook intact")

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        if self._exec is not None:
            with contextlib.suppress(Exception):
                self._exec.close()
            with contextlib.suppress(Failure):  # best effort: the pod may be gone
                streams.exec_output(
                    self.cluster,
                    self.namespace,
                    self.pod,
                    CONTAINER,
                    ["sh", "-c", f"kill $(cat {PIDFILE}) 2>/dev/null; rm -f {PIDFILE}"],
                    timeout=10,
                )
