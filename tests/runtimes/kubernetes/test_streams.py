"""Port-forward, exec and logs of pods on the fake kwok node, through the real API server and
the official client (``kubernetes.stream.portforward``, ``kubernetes.stream.stream``,
``CoreV1Api.read_namespaced_pod_log``), answered by local servers, processes and files
(``tests/support/kube_streams.py``). What a notebook dev loop needs: a port-forward to the
notebook pod's 8888 reaching a real HTTP server, a watcher exec'd "in the pod" whose output
streams back, and log tails.

Also pinned here, because the dev loop must live with them: a port-forwarded connection
never reports EOF when the server closes it (read by Content-Length), and closing an exec
stream does not stop the command when the client speaks ``v5.channel.k8s.io`` (its default):
the API server keeps its SPDY stream to the node open until the command ends. With
``v4.channel.k8s.io`` the command ends at its next write after the close.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client  # type: ignore[import-untyped, unused-ignore]
from kubernetes.client import ApiException  # type: ignore[import-untyped, unused-ignore]
from kubernetes.stream import (  # type: ignore[import-untyped, unused-ignore]
    portforward,
    stream,
)
from kubernetes.stream.ws_client import (  # type: ignore[import-untyped, unused-ignore]
    ERROR_CHANNEL,
)

from tests.support.kube import FAKE_NODE, ControlPlane
from tests.support.kube_streams import StreamMappings, append_log
from tests.support.waiting import wait_for

TIMEOUT = 120.0  # an upper bound only: every wait ends as soon as what it waits for happens
# a shell loop (in the exec's working directory) that ends once the test creates ``release``,
# or after TIMEOUT at most
_UNTIL_RELEASED = (
    f"n=0; while [ ! -e release ] && [ $n -lt {int(TIMEOUT * 20)} ]; "
    "do sleep 0.05; n=$((n+1)); done"
)
NOTEBOOK_PORT = 8888
TOKEN = "t0ken"
V4 = {"sec-websocket-protocol": "v4.channel.k8s.io"}  # the client offers v5 first otherwise


def _poll(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    return wait_for(check, what, timeout, interval=0.02)


@pytest.fixture(scope="module")
def core(kube_cluster: ControlPlane) -> Iterator[Any]:
    with kube_cluster.api_client() as api_client:
        yield client.CoreV1Api(api_client)


@pytest.fixture
def namespace(kube_cluster: ControlPlane, request: pytest.FixtureRequest) -> str:
    return kube_cluster.new_namespace(request.node.name.removeprefix("test_").replace("_", "-"))


@pytest.fixture
def streams(kube_cluster: ControlPlane) -> Iterator[StreamMappings]:
    with StreamMappings(kube_cluster) as mappings:
        yield mappings


def _pod(core: Any, namespace: str, name: str, container: str = "notebook") -> None:
    """A notebook-like pod, Running on the kwok node."""
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "containers": [
                    {
                        "name": container,
                        "image": "jupyter",
                        "ports": [{"name": "notebook", "containerPort": NOTEBOOK_PORT}],
                    }
                ],
                "terminationGracePeriodSeconds": 0,
            },
        },
    )

    def running() -> bool:
        pod = core.read_namespaced_pod(name, namespace)
        return bool(pod.spec.node_name == FAKE_NODE and pod.status.phase == "Running")

    _poll(f"pod {namespace}/{name} Running", running)


# --- port-forward ---------------------------------------------------------------------------


class _Jupyter:
    """A local stand-in for Jupyter: ``GET /api`` answers 200 with a version when the token
    (``Authorization: token …`` or ``?token=…``) is right, else 403. HTTP/1.1, keep-alive."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.peers: list[int] = []  # the client port of each request's connection
        self.closed = False
        jupyter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                jupyter.requests.append(self.path)
                jupyter.peers.append(int(self.client_address[1]))
                path, _, query = self.path.partition("?")
                token = self.headers.get("Authorization", "").removeprefix("token ")
                good = TOKEN in (token, query.removeprefix("token="))
                if path != "/api":
                    status, doc = 404, {"message": "not found"}
                elif good:
                    status, doc = 200, {"version": "2.14.0"}
                else:
                    status, doc = 403, {"message": "Forbidden"}
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def jupyter() -> Iterator[_Jupyter]:
    server = _Jupyter()
    try:
        yield server
    finally:
        server.close()


def _http_over(sock: Any) -> http.client.HTTPConnection:
    """An HTTP client on a port-forwarded socket (it answers by Content-Length: the socket
    never reports EOF)."""
    conn = http.client.HTTPConnection("127.0.0.1", NOTEBOOK_PORT, timeout=TIMEOUT)
    conn.sock = sock
    return conn


def _get(conn: http.client.HTTPConnection, path: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"token {token}"} if token else {}
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_port_forward_to_the_notebook_port_reaches_the_local_server(
    core: Any, namespace: str, streams: StreamMappings, jupyter: _Jupyter
) -> None:
    _pod(core, namespace, "nb")
    streams.forward_port(namespace, "nb", NOTEBOOK_PORT, jupyter.port)

    forward = portforward(
        core.connect_get_namespaced_pod_portforward, "nb", namespace, ports=str(NOTEBOOK_PORT)
    )
    try:
        conn = _http_over(forward.socket(NOTEBOOK_PORT))
        assert _get(conn, "/api", TOKEN) == (200, {"version": "2.14.0"})
        # the same forwarded connection, kept alive
        assert _get(conn, "/api", "wrong") == (403, {"message": "Forbidden"})
        assert _get(conn, f"/api?token={TOKEN}", None) == (200, {"version": "2.14.0"})
        assert forward.error(NOTEBOOK_PORT) is None
    finally:
        forward.close()
    assert jupyter.requests == ["/api", "/api", f"/api?token={TOKEN}"]
    assert len(set(jupyter.peers)) == 1  # one connection to the server

    # two concurrent forwarded connections: kwok dials the server for each
    first, second = (
        portforward(core.connect_get_namespaced_pod_portforward, "nb", namespace, ports="8888")
        for _ in range(2)
    )
    try:
        one, two = _http_over(first.socket(8888)), _http_over(second.socket(8888))
        assert _get(one, "/api", TOKEN)[0] == 200
        assert _get(two, "/api", TOKEN)[0] == 200
        assert _get(one, "/nope", TOKEN)[0] == 404
    finally:
        first.close()
        second.close()
    assert len(set(jupyter.peers)) == 3
    assert jupyter.peers[3] == jupyter.peers[5] != jupyter.peers[4]


def test_port_forward_mapped_for_a_namespace_reaches_a_pod_created_later(
    core: Any, namespace: str, streams: StreamMappings, jupyter: _Jupyter
) -> None:
    # mapped before the pod exists, for any pod of the namespace (generated names)
    streams.forward_port(namespace, None, NOTEBOOK_PORT, jupyter.port)
    _pod(core, namespace, "notebook-x7k2p")

    forward = portforward(
        core.connect_get_namespaced_pod_portforward,
        "notebook-x7k2p",
        namespace,
        ports=str(NOTEBOOK_PORT),
    )
    try:
        assert _get(_http_over(forward.socket(NOTEBOOK_PORT)), "/api", TOKEN)[0] == 200
    finally:
        forward.close()


def test_port_forward_errors_come_back_on_the_ports_error_channel(
    core: Any, namespace: str, streams: StreamMappings, jupyter: _Jupyter
) -> None:
    _pod(core, namespace, "nb")
    mapping = streams.forward_port(namespace, "nb", NOTEBOOK_PORT, jupyter.port)
    mapping.remove()  # returns once kwok no longer forwards the port

    forward = portforward(
        core.connect_get_namespaced_pod_portforward, "nb", namespace, ports=str(NOTEBOOK_PORT)
    )
    try:
        sock = forward.socket(NOTEBOOK_PORT)
        sock.settimeout(TIMEOUT)
        assert sock.recv(1) == b""  # closed by the error
        assert "no forward found for port 8888" in forward.error(NOTEBOOK_PORT)
    finally:
        forward.close()
    assert jupyter.requests == []

    jupyter.close()  # nothing listens there any more
    streams.forward_port(namespace, "nb", NOTEBOOK_PORT, jupyter.port)
    forward = portforward(
        core.connect_get_namespaced_pod_portforward, "nb", namespace, ports=str(NOTEBOOK_PORT)
    )
    try:
        sock = forward.socket(NOTEBOOK_PORT)
        sock.settimeout(TIMEOUT)
        assert sock.recv(1) == b""
        assert "connection refused" in forward.error(NOTEBOOK_PORT)
    finally:
        forward.close()


def test_port_forward_to_a_command_talks_to_its_stdin_and_stdout(
    core: Any, namespace: str, streams: StreamMappings
) -> None:
    _pod(core, namespace, "nb")
    upper = "import sys\nfor line in sys.stdin:\n    print(line.upper(), end='', flush=True)"
    streams.forward_command(namespace, "nb", 7000, [sys.executable, "-c", upper])

    forward = portforward(
        core.connect_get_namespaced_pod_portforward, "nb", namespace, ports="7000"
    )
    try:
        sock = forward.socket(7000)
        sock.settimeout(TIMEOUT)
        sock.sendall(b"hello\n")
        assert sock.makefile("rb").readline() == b"HELLO\n"  # however it is split in transit
    finally:
        forward.close()


# --- exec -----------------------------------------------------------------------------------

WATCHER = textwrap.dedent(
    """
    import json, os, sys, time
    root = sys.argv[1]
    seen = set(os.listdir(root))
    print(json.dumps({"cwd": os.getcwd(), "mode": os.environ["WATCH_MODE"]}), flush=True)
    print(json.dumps({"notes": open(os.path.join(root, "notes.txt")).read()}), flush=True)
    while not os.path.exists(os.path.join(root, "stop")):
        now = set(os.listdir(root))
        for name in sorted(now - seen):
            print(json.dumps({"event": "created", "path": name}), flush=True)
        seen = now
        time.sleep(0.02)
    sys.exit(3)
    """
)

TICKER = textwrap.dedent(
    """
    import itertools, os, sys, time
    with open(sys.argv[1], "w") as f:
        f.write(str(os.getpid()))
    for i in itertools.count():
        print("tick", i, flush=True)
        with open(sys.argv[2], "a") as f:
            f.write(f"{i}\\n")
        time.sleep(0.05)
    """
)


def _exec(core: Any, namespace: str, pod: str, command: list[str], **kwargs: Any) -> Any:
    return stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        container="notebook",
        command=command,
        stdin=kwargs.pop("stdin", False),
        stdout=True,
        stderr=True,
        tty=False,
        **kwargs,
    )


class _Stdout:
    """The stdout lines of a streaming exec, whatever the frame boundaries. (The client's
    ``readline_stdout`` drops what it buffered when the stream closes in the same read.)"""

    def __init__(self, ws: Any) -> None:
        self.ws, self.buffer = ws, ""

    def lines(self, count: int, timeout: float = TIMEOUT) -> list[str]:
        """The next ``count`` lines (fails after ``timeout``, or if the stream closes first)."""
        deadline = time.monotonic() + timeout
        while self.buffer.count("\n") < count:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{count} lines expected on stdout, got {self.buffer!r}")
            was_open = self.ws.is_open()
            self.ws.update(timeout=min(left, 1.0))
            self.buffer += self.ws.read_stdout(timeout=0)
            if not was_open and self.buffer.count("\n") < count:
                stderr = self.ws.read_stderr(timeout=0)
                pytest.fail(f"stream closed after {self.buffer!r}; stderr: {stderr!r}")
        *lines, self.buffer = self.buffer.split("\n", count)
        return lines


def _line_or_end(ws: Any) -> bool:
    """Whether a streaming exec has a whole line of stdout buffered, or has ended (after
    reading what arrives within a second)."""
    ws.update(timeout=1)
    return "\n" in ws.peek_stdout() or not ws.is_open()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_exec_runs_the_mapped_command_locally_and_streams_its_output(
    core: Any, namespace: str, streams: StreamMappings, tmp_path: Path
) -> None:
    content = tmp_path / "content"  # the pod's /content, on this machine
    content.mkdir()
    (content / "notes.txt").write_text("hello", encoding="utf-8")
    watcher = tmp_path / "watch.py"
    watcher.write_text(WATCHER, encoding="utf-8")
    _pod(core, namespace, "nb")
    streams.exec_as(
        namespace,
        "nb",
        "notebook",
        workdir=content,
        env={"WATCH_MODE": "events"},
        commands={"watcher": [sys.executable, str(watcher)]},  # "watcher" on the pod's PATH
    )

    ws = _exec(core, namespace, "nb", ["watcher", "."], _preload_content=False)
    stdout = _Stdout(ws)
    try:
        first = [json.loads(line) for line in stdout.lines(2)]
        assert first == [
            {"cwd": str(content.resolve()), "mode": "events"},
            {"notes": "hello"},
        ]
        # output streams while the command runs: it only ends once the test says so
        (content / "a.ipynb").write_text("{}", encoding="utf-8")
        assert json.loads(stdout.lines(1)[0]) == {"event": "created", "path": "a.ipynb"}
        (content / "stop").touch()
        _poll("the watcher to exit", lambda: (ws.update(timeout=1), not ws.is_open())[1])
        # kwok v0.7.0 reports a non-zero exit as an error carrying the status, not as an exit
        # code (the client's ``returncode`` cannot parse it)
        error = yaml.safe_load(ws.read_channel(ERROR_CHANNEL))
        assert error["status"] == "Failure"
        assert error["message"].endswith("cmd wait: watcher .: exit status 3")
    finally:
        ws.close()

    # stdin reaches the command; a plain command, found on kwok's PATH, runs in the workdir
    ws = _exec(
        core,
        namespace,
        "nb",
        ["sh", "-c", "read x; echo $x $(pwd)"],
        stdin=True,
        _preload_content=False,
    )
    try:
        ws.write_stdin("hi\n")
        assert _Stdout(ws).lines(1) == [f"hi {content.resolve()}"]
    finally:
        ws.close()
    out = _exec(core, namespace, "nb", ["cat", "notes.txt"])
    assert out == "hello"


def test_exec_exit_status_and_tty(
    core: Any, namespace: str, streams: StreamMappings, tmp_path: Path
) -> None:
    _pod(core, namespace, "nb")
    streams.exec_as(namespace, "nb", "notebook", workdir=tmp_path)

    ws = _exec(core, namespace, "nb", ["true"], _preload_content=False)
    ws.run_forever(timeout=TIMEOUT)
    assert ws.returncode == 0
    ws = _exec(core, namespace, "nb", ["sh", "-c", "exit 7"], _preload_content=False)
    ws.run_forever(timeout=TIMEOUT)
    error = yaml.safe_load(ws.peek_channel(ERROR_CHANNEL))
    assert (error["status"], error["message"][-13:]) == ("Failure", "exit status 7")
    with pytest.raises(ValueError):
        ws.returncode  # noqa: B018  (the client cannot parse kwok's failure)

    # kwok closes the pty as soon as the command exits, racing its copy of what the command
    # wrote last: the command stays until its output has arrived, then the test releases it
    ws = stream(
        core.connect_get_namespaced_pod_exec,
        "nb",
        namespace,
        container="notebook",
        command=["sh", "-c", f"test -t 1 && echo terminal && {_UNTIL_RELEASED}"],
        stdin=True,
        stdout=True,
        stderr=False,
        tty=True,
        _preload_content=False,
    )
    _poll("the terminal's output", lambda: _line_or_end(ws))
    (tmp_path / "release").touch()
    ws.run_forever(timeout=TIMEOUT)
    assert ws.read_all() == "terminal\r\n"


def test_exec_stopped_by_closing_a_v4_stream_ends_at_its_next_write(
    core: Any, namespace: str, streams: StreamMappings, tmp_path: Path
) -> None:
    (tmp_path / "ticker.py").write_text(TICKER, encoding="utf-8")
    _pod(core, namespace, "nb")
    streams.exec_as(namespace, "nb", "notebook", workdir=tmp_path)

    ws = _exec(
        core,
        namespace,
        "nb",
        [sys.executable, "ticker.py", "pid", "ticks"],
        _preload_content=False,
        _headers=V4,
    )
    try:
        assert ws.subprotocol == "v4.channel.k8s.io"
        assert _Stdout(ws).lines(2) == ["tick 0", "tick 1"]
        pid = int((tmp_path / "pid").read_text())
    finally:
        ws.close()
    _poll("the ticker to end after the stream closed", lambda: not _alive(pid))


def test_exec_closing_a_v5_stream_leaves_the_command_running_until_killed(
    core: Any, namespace: str, streams: StreamMappings, tmp_path: Path
) -> None:
    (tmp_path / "ticker.py").write_text(TICKER, encoding="utf-8")
    _pod(core, namespace, "nb")
    streams.exec_as(namespace, "nb", "notebook", workdir=tmp_path)

    ws = _exec(
        core, namespace, "nb", [sys.executable, "ticker.py", "pid", "ticks"], _preload_content=False
    )
    try:
        assert ws.subprotocol == "v5.channel.k8s.io"
        assert _Stdout(ws).lines(2) == ["tick 0", "tick 1"]
        pid = int((tmp_path / "pid").read_text())
    finally:
        ws.close()
    ticks = tmp_path / "ticks"

    def count() -> int:
        return len(ticks.read_text().splitlines())

    closed_at = count()
    _poll("the ticker to go on after the close", lambda: count() >= closed_at + 5)
    assert _alive(pid)
    # what a client has to do instead: stop it with another exec
    assert _exec(core, namespace, "nb", ["kill", str(pid)]) == ""
    _poll("the ticker to end after kill", lambda: not _alive(pid))


# --- logs -----------------------------------------------------------------------------------


def test_logs_come_from_the_mapped_file(
    core: Any, namespace: str, streams: StreamMappings, tmp_path: Path
) -> None:
    _pod(core, namespace, "nb")
    log, previous = tmp_path / "notebook.log", tmp_path / "previous.log"
    append_log(previous, ["before the restart"])
    mapping = streams.logs_from(namespace, "nb", "notebook", log, previous_path=previous)

    def read(**kwargs: Any) -> str:
        return str(core.read_namespaced_pod_log("nb", namespace, container="notebook", **kwargs))

    assert read() == ""
    append_log(log, [f"line {i}" for i in range(1, 6)])
    append_log(log, ["oops"], stream="stderr")
    assert read() == "".join(f"line {i}\n" for i in range(1, 6)) + "oops\n"
    assert read(tail_lines=2) == "line 5\noops\n"
    append_log(log, ["line 6"])  # read at each request
    assert read(tail_lines=1) == "line 6\n"
    stamped = read(tail_lines=1, timestamps=True)
    assert stamped.endswith(" line 6\n") and stamped[:4].isdigit() and "T" in stamped[:20]
    assert read(previous=True) == "before the restart\n"

    mapping.remove()
    with pytest.raises(ApiException) as error:
        read()
    assert json.loads(str(error.value.body))["message"].startswith(
        'no logs found for container "notebook"'
    )


def test_logs_follow_streams_lines_appended_later(
    core: Any, namespace: str, streams: StreamMappings, tmp_path: Path
) -> None:
    _pod(core, namespace, "nb")
    log = tmp_path / "notebook.log"
    append_log(log, ["started"])
    streams.logs_from(namespace, "nb", "notebook", log)

    response = core.read_namespaced_pod_log(
        "nb",
        namespace,
        container="notebook",
        follow=True,
        _preload_content=False,
        _request_timeout=TIMEOUT,
    )
    try:
        chunks = response.stream(1024)
        assert next(chunks) == b"started\n"
        append_log(log, ["saved a.ipynb"])
        assert next(chunks) == b"saved a.ipynb\n"
    finally:
        response.close()
        response.release_conn()
