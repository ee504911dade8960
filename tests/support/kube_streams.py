"""Logs, exec and port-forward against pods on the fake kwok node, for real.

The test control plane (``tests/support/kube.py``) runs kwok's kubelet-like server: the API
server sends it a pod's ``/log``, ``/exec`` and ``/portforward`` requests, and kwok answers them
from mappings, objects of API group ``kwok.x-k8s.io/v1alpha1`` it watches (``--enable-crds``):

- ``PortForward``: a pod's port -> a local ``address:port`` (kwok dials it for each connection)
  or a local command whose stdin/stdout is the connection;
- ``Exec``: a pod's container -> how to run commands exec'd in it *on this machine*: working
  directory and extra environment. The command itself is the one the client sends (kwok
  v0.7.0 cannot substitute it); ``exec_as(commands=...)`` adds per-pod substitutes;
- ``Logs``: a pod's container -> a local log file in the CRI format
  (``<RFC 3339 time> stdout|stderr F <text>`` per line: ``append_log`` writes it), read the
  way the kubelet reads it (``tailLines``, ``timestamps``, ``follow``, ``previous`` with
  ``previous_path``).

The helpers below write those objects: one namespaced object per pod, named after the pod (kwok
matches it by namespace and name; the pod may be created before or after), holding one entry
per port or container; with ``pod=None``, a cluster-scoped ``ClusterPortForward`` /
``ClusterExec`` / ``ClusterLogs`` selecting every pod of the namespace. kwok consults the pod's
own object first and falls back to the namespace-wide one only when the pod has none of that
kind (a pod with a ``PortForward`` for 8888 and nothing for 9000 does not fall back for 9000).

Each helper returns once kwok applies the new mapping: kwok has no status to wait for, so a
sentinel pod in a namespace of its own is probed through the API server after each write (kwok
receives the objects of one kind in order, so seeing the sentinel's latest nonce means it has
seen every earlier write of that kind too). That costs a few tens of milliseconds per call.

Each helper returns a ``StreamMapping``: ``remove()`` (or leaving its ``with`` block) takes the
entry out again; ``StreamMappings`` collects them for a test and removes them all at teardown.
Namespaced mappings also disappear with their namespace.

What kwok v0.7.0 and the API server do with them, pinned by
``tests/runtimes/kubernetes/test_streams.py``:

- port-forward (``kubernetes.stream.portforward``; the API server passes the client's websocket
  ``v4.channel.k8s.io`` through to kwok): bytes flow both ways, one dial of the target per
  forwarded connection; when the local server closes a connection the client's socket sees no
  EOF (v4 cannot half-close a port): read HTTP answers by ``Content-Length`` (``http.client``
  does), never until EOF. Errors (no mapping, refused dial) arrive on the port's error channel;
- exec (``kubernetes.stream.stream``): the command runs as a child of kwok with the mapping's
  working directory and environment added to kwok's; stdout/stderr stream back as written
  (use ``update``/``read_stdout``: the client's ``readline_stdout`` drops buffered output when
  the stream closes); stdin reaches it but its end never does (kwok does not close the pipe:
  seen by hand, not pinned); ``tty=True`` works. Exit 0 gives ``returncode == 0``; any other
  exit comes back as a Failure status whose message ends ``exit status N`` (the client's
  ``returncode`` raises ValueError).
  Closing the stream does not signal the command: with ``v4.channel.k8s.io``
  (``_headers={"sec-websocket-protocol": "v4.channel.k8s.io"}``) it ends at its next write
  (broken pipe); with ``v5.channel.k8s.io``, the client's default, the API server translates
  to SPDY and keeps that stream open, so the command runs on until it ends by itself, is killed
  (another exec of ``kill``), or the control plane stops;
- logs (``CoreV1Api.read_namespaced_pod_log``): the file as it is at each request; ``follow``
  streams lines appended later.

The API server delays the first create of each kind by 2 s when it comes within about 2 s of
the CRDs' creation at start-up (apiextensions' guard for HA clusters), so a test run right after
start-up may pay that once.
"""

from __future__ import annotations

import copy
import shlex
import shutil
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.kube import KWOK_API_VERSION, ControlPlane, kwok_path

SYNC_TIMEOUT = 120.0  # seconds for kwok to apply a write (typically well under 0.1 s)
_REWRITE_AFTER = 0.5  # write the sentinel again if kwok has not shown its nonce by then
COMMANDS_ENV = "SUBSTRATUS_KWOK_COMMANDS"  # set by exec_as(commands=...): the substitutes
_NONCE_ENV = "SUBSTRATUS_KWOK_NONCE"
_SENTINEL_POD = "sentinel"  # answers through the namespaced kinds
_SENTINEL_CLUSTER_POD = "sentinel-cluster"  # answers through the cluster-scoped kinds
_SENTINEL_OBJECT = "substratus-sentinel"
_SENTINEL_CONTAINER = "probe"
_SENTINEL_PORT = 1
_SH = shutil.which("sh") or "/bin/sh"

# kind -> the list in its spec
_ENTRIES = {
    "PortForward": "forwards",
    "Exec": "execs",
    "Logs": "logs",
}


class StreamMappingError(RuntimeError):
    """A mapping could not be written, or kwok did not apply it in time."""


# --- the mappings ---------------------------------------------------------------------------


@dataclass(eq=False)
class StreamMapping:
    """One entry (a port, or a container) in a kwok mapping object; ``remove()`` takes it out
    (deleting the object when it was the last entry). Idempotent; also a context manager."""

    plane: ControlPlane
    kind: str  # PortForward, Exec, Logs or their Cluster* variants
    namespace: str  # the pods' namespace
    pod: str | None  # None: every pod of the namespace (a Cluster* object)
    name: str  # the object's name
    entry: dict[str, Any]  # the entry written
    removed: bool = False

    def remove(self, wait: bool = True) -> None:
        """Take the entry out (unless another entry replaced it since); with ``wait``, return
        once kwok stopped applying it."""
        if self.removed:
            return
        self.removed = True
        path = _object_path(self.kind, self.name, self.namespace)

        def edit(obj: dict[str, Any] | None) -> dict[str, Any] | None:
            if obj is None:
                return None
            entries = obj["spec"].get(_ENTRIES[_base(self.kind)]) or []
            kept = [e for e in entries if e != self.entry]
            if len(kept) == len(entries):
                return obj  # replaced or already gone: leave it
            if not kept:
                return None
            obj["spec"][_ENTRIES[_base(self.kind)]] = kept
            return obj

        _update(self.plane, path, edit)
        if wait:
            _sentinels(self.plane).sync(self.kind)

    def __enter__(self) -> StreamMapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove(wait=False)


def forward_port(
    plane: ControlPlane,
    namespace: str,
    pod: str | None,
    container_port: int,
    target_port: int,
    *,
    address: str = "127.0.0.1",
) -> StreamMapping:
    """Port-forwards to ``container_port`` of ``pod`` (every pod of ``namespace`` when None)
    reach ``address:target_port`` on this machine: kwok dials it once per forwarded
    connection (nothing needs to listen there until then; a refused dial shows on the
    port's error channel). Replaces an earlier mapping of the same port."""
    _check_port(container_port)
    _check_port(target_port)
    entry = {"ports": [container_port], "target": {"port": target_port, "address": address}}
    return _register(plane, "PortForward", namespace, pod, entry, key=("ports", container_port))


def forward_command(
    plane: ControlPlane,
    namespace: str,
    pod: str | None,
    container_port: int,
    command: Sequence[str],
) -> StreamMapping:
    """Port-forwards to ``container_port`` of ``pod`` run ``command`` on this machine (from
    kwok's working directory, with kwok's environment), one process per connection, with the
    connection as its stdin and stdout. Replaces an earlier mapping of the same port."""
    _check_port(container_port)
    if not command:
        raise ValueError("command must not be empty")
    entry = {"ports": [container_port], "command": list(command)}
    return _register(plane, "PortForward", namespace, pod, entry, key=("ports", container_port))


def exec_as(
    plane: ControlPlane,
    namespace: str,
    pod: str | None,
    container: str,
    *,
    workdir: Path | str,
    env: Mapping[str, str] | None = None,
    commands: Mapping[str, Sequence[str]] | None = None,
) -> StreamMapping:
    """Commands exec'd in ``container`` of ``pod`` (of every pod of ``namespace`` when None)
    run on this machine, as children of kwok, in ``workdir`` with ``env`` added to kwok's
    environment. A command is what the client sends, looked up on kwok's PATH when it has no
    slash (a relative path with a slash is relative to ``workdir``). ``commands`` substitutes
    programs for this mapping only: ``{"watcher": [sys.executable, "watch.py"]}`` makes
    ``["watcher", "--once"]`` run ``sys.executable watch.py --once`` (through a shell shim on
    kwok's PATH; an absolute path such as ``/usr/bin/watcher`` is never substituted). Replaces
    an earlier mapping of the same container."""
    local: dict[str, Any] = {"workDir": str(Path(workdir).resolve())}
    envs = [{"name": k, "value": v} for k, v in (env or {}).items()]
    if commands:
        envs = [e for e in envs if e["name"] != COMMANDS_ENV]
        envs.append({"name": COMMANDS_ENV, "value": str(_write_commands(plane, commands))})
    if envs:
        local["envs"] = envs
    entry = {"containers": [container], "local": local}
    return _register(plane, "Exec", namespace, pod, entry, key=("containers", container))


def logs_from(
    plane: ControlPlane,
    namespace: str,
    pod: str | None,
    container: str,
    path: Path | str,
    *,
    previous_path: Path | str | None = None,
) -> StreamMapping:
    """The logs of ``container`` of ``pod`` (of every pod of ``namespace`` when None) are the
    CRI-format file ``path`` (see ``append_log``), read at each request; ``previous=true``
    reads ``previous_path``. ``path`` is created empty if missing (a missing file is an error
    of the request). Replaces an earlier mapping of the same container."""
    log = Path(path).resolve()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    entry: dict[str, Any] = {"containers": [container], "logsFile": str(log)}
    if previous_path is not None:
        entry["previousLogsFile"] = str(Path(previous_path).resolve())
    return _register(plane, "Logs", namespace, pod, entry, key=("containers", container))


def cri_log_line(text: str, stream: str = "stdout", when: datetime | None = None) -> str:
    """One line of the CRI container log format, as the kubelet reads it (no newline in
    ``text``; ``when`` defaults to now)."""
    if stream not in ("stdout", "stderr"):
        raise ValueError(f"stream must be stdout or stderr, not {stream!r}")
    if "\n" in text:
        raise ValueError("one line at a time")
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"
    return f"{stamp} {stream} F {text}\n"


def append_log(
    path: Path | str, lines: Iterable[str], stream: str = "stdout", when: datetime | None = None
) -> None:
    """Append ``lines`` to the CRI-format log ``path`` (created if missing)."""
    text = "".join(cri_log_line(line, stream, when) for line in lines)
    with Path(path).open("a", encoding="utf-8") as out:
        out.write(text)


class StreamMappings:
    """The mappings of one test: the helpers above without the ``plane`` argument; ``close()``
    removes every mapping still in place (without waiting for kwok)."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.mappings: list[StreamMapping] = []

    def _keep(self, mapping: StreamMapping) -> StreamMapping:
        self.mappings.append(mapping)
        return mapping

    def forward_port(
        self,
        namespace: str,
        pod: str | None,
        container_port: int,
        target_port: int,
        *,
        address: str = "127.0.0.1",
    ) -> StreamMapping:
        return self._keep(
            forward_port(self.plane, namespace, pod, container_port, target_port, address=address)
        )

    def forward_command(
        self, namespace: str, pod: str | None, container_port: int, command: Sequence[str]
    ) -> StreamMapping:
        return self._keep(forward_command(self.plane, namespace, pod, container_port, command))

    def exec_as(
        self,
        namespace: str,
        pod: str | None,
        container: str,
        *,
        workdir: Path | str,
        env: Mapping[str, str] | None = None,
        commands: Mapping[str, Sequence[str]] | None = None,
    ) -> StreamMapping:
        return self._keep(
            exec_as(
                self.plane,
                namespace,
                pod,
                container,
                workdir=workdir,
                env=env,
                commands=commands,
            )
        )

    def logs_from(
        self,
        namespace: str,
        pod: str | None,
        container: str,
        path: Path | str,
        *,
        previous_path: Path | str | None = None,
    ) -> StreamMapping:
        return self._keep(
            logs_from(self.plane, namespace, pod, container, path, previous_path=previous_path)
        )

    def close(self) -> None:
        errors: list[str] = []
        for mapping in reversed(self.mappings):
            try:
                mapping.remove(wait=False)
            except Exception as exc:  # remove the others all the same
                errors.append(f"{mapping.kind} {mapping.name}: {exc}")
        self.mappings.clear()
        if errors:
            raise StreamMappingError("removing mappings: " + "; ".join(errors))

    def __enter__(self) -> StreamMappings:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- writing the objects --------------------------------------------------------------------


def _base(kind: str) -> str:
    return kind.removeprefix("Cluster")


def _check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"not a port: {port}")


def _object_path(kind: str, name: str, namespace: str) -> str:
    return kwok_path(kind, name, None if kind.startswith("Cluster") else namespace)


def _register(
    plane: ControlPlane,
    kind: str,
    namespace: str,
    pod: str | None,
    entry: dict[str, Any],
    key: tuple[str, str | int],
) -> StreamMapping:
    """Put ``entry`` in the object of ``pod`` (replacing the entry with the same key), then
    wait until kwok applies it."""
    if pod is None:
        kind, name = f"Cluster{kind}", f"namespace.{namespace}"
    else:
        name = pod
    field_name, value = key
    list_name = _ENTRIES[kind.removeprefix("Cluster")]

    def edit(obj: dict[str, Any] | None) -> dict[str, Any]:
        if obj is None:
            metadata: dict[str, Any] = {"name": name}
            spec: dict[str, Any] = {list_name: []}
            if pod is None:
                spec["selector"] = {"matchNamespaces": [namespace]}
            else:
                metadata["namespace"] = namespace
            obj = {"apiVersion": KWOK_API_VERSION, "kind": kind, "metadata": metadata}
            obj["spec"] = spec
        entries = [e for e in obj["spec"].get(list_name) or [] if e.get(field_name) != [value]]
        obj["spec"][list_name] = [*entries, entry]
        return obj

    _update(plane, _object_path(kind, name, namespace), edit)
    _sentinels(plane).sync(kind)
    return StreamMapping(plane, kind, namespace, pod, name, entry)


def _update(
    plane: ControlPlane,
    path: str,
    edit: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    attempts: int = 10,
) -> None:
    """Read-modify-write the object at ``path`` (None: absent / delete it), retrying on a
    conflict with a concurrent writer."""
    for _ in range(attempts):
        status, current = plane.request("GET", path)
        if status not in (200, 404):
            raise StreamMappingError(f"GET {path}: {status} {current}")
        before = current if status == 200 else None
        after = edit(None if before is None else _copy(before))
        if after is None:
            if before is None:
                return
            precondition = {"resourceVersion": before["metadata"]["resourceVersion"]}
            status, body = plane.request(
                "DELETE", path, {"kind": "DeleteOptions", "preconditions": precondition}
            )
            if status in (200, 404):
                return
        elif before is None:
            collection = path.rsplit("/", 1)[0]
            status, body = plane.request("POST", collection + "?fieldValidation=Strict", after)
            if status == 201:
                return
        elif after == before:
            return
        else:
            status, body = plane.request("PUT", path + "?fieldValidation=Strict", after)
            if status == 200:
                return
        if status != 409:  # 409: changed or created meanwhile; read again
            raise StreamMappingError(f"writing {path}: {status} {body}")
    raise StreamMappingError(f"writing {path}: still conflicting after {attempts} attempts")


def _copy(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(obj)


def _write_commands(plane: ControlPlane, commands: Mapping[str, Sequence[str]]) -> Path:
    """A directory of this mapping's substitutes, and a shim per name on kwok's PATH that runs
    the substitute when ``$SUBSTRATUS_KWOK_COMMANDS`` has one, else the real program."""
    shims = plane.kwok_bin_dir
    if shims is None:
        raise StreamMappingError("this control plane gives kwok no command directory")
    directory = plane.workdir / "kwok-commands" / uuid.uuid4().hex[:12]
    directory.mkdir(parents=True)
    for name, argv in commands.items():
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"a command name, not a path: {name!r}")
        if not argv:
            raise ValueError(f"empty command for {name!r}")
        script = "#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in argv) + ' "$@"\n'
        _write_executable(directory / name, script)
        shim = shims / name
        if not shim.exists():
            _write_executable(shim, _shim(name, shims))
    return directory


def _shim(name: str, shims: Path) -> str:
    q_name, q_dir = shlex.quote(name), shlex.quote(str(shims))
    return f"""#!/bin/sh
# tests/support/kube_streams.py: {name} exec'd in a pod runs the mapping's substitute, if any,
# else the real {name} (PATH without this directory).
if [ -n "${{{COMMANDS_ENV}:-}}" ] && [ -x "${COMMANDS_ENV}"/{q_name} ]; then
  exec "${COMMANDS_ENV}"/{q_name} "$@"
fi
set -f
real=
IFS=:
for dir in $PATH; do
  [ "$dir" = {q_dir} ] || real="${{real:+$real:}}$dir"
done
unset IFS
PATH=$real
export PATH
exec {q_name} "$@"
"""


def _write_executable(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o755)
    tmp.replace(path)


# --- knowing when kwok applies a write ------------------------------------------------------


class _Sentinels:
    """Two pods on the kwok node, in a namespace of their own: ``sentinel`` answers through a
    ``PortForward``, ``Exec`` and ``Logs`` of its own, ``sentinel-cluster`` through cluster
    objects selecting it alone. ``sync(kind)`` writes a fresh nonce into the sentinel object
    of ``kind`` and probes until kwok answers with it."""

    def __init__(self, plane: ControlPlane) -> None:
        self._plane = weakref.ref(plane)  # a value of _sentinels_by_plane: no cycle to its key
        self.lock = threading.Lock()
        self.namespace = ""
        self.api: Any = None
        self.dir = plane.workdir / "kwok-sentinel"

    @property
    def plane(self) -> ControlPlane:
        plane = self._plane()
        if plane is None:
            raise StreamMappingError("the control plane is gone")
        return plane

    def _start(self) -> None:
        from kubernetes import client  # type: ignore[import-untyped, unused-ignore]

        self.dir.mkdir(parents=True, exist_ok=True)
        self.namespace = self.plane.new_namespace("kwok-sentinel")
        self.api = self.plane.api_client()
        core: Any = client.CoreV1Api(self.api)
        for name in (_SENTINEL_POD, _SENTINEL_CLUSTER_POD):
            core.create_namespaced_pod(
                self.namespace,
                {
                    "metadata": {"name": name},
                    "spec": {
                        "containers": [{"name": _SENTINEL_CONTAINER, "image": "sentinel"}],
                        "terminationGracePeriodSeconds": 0,
                    },
                },
            )
        deadline = time.monotonic() + SYNC_TIMEOUT
        for name in (_SENTINEL_POD, _SENTINEL_CLUSTER_POD):
            while core.read_namespaced_pod(name, self.namespace).status.phase != "Running":
                if time.monotonic() > deadline:
                    raise StreamMappingError(f"sentinel pod {name} not Running on the kwok node")
                time.sleep(0.02)

    def sync(self, kind: str) -> None:
        with self.lock:
            if self.api is None:
                self._start()
            deadline = time.monotonic() + SYNC_TIMEOUT
            while True:
                nonce = uuid.uuid4().hex
                self._write(kind, nonce)
                rewrite = min(deadline, time.monotonic() + _REWRITE_AFTER)
                while time.monotonic() < rewrite:
                    if self._probe(kind, nonce):
                        return
                    time.sleep(0.01)
                if time.monotonic() >= deadline:
                    raise StreamMappingError(
                        f"kwok did not apply a {kind} write within {SYNC_TIMEOUT:.0f} s "
                        f"(see {self.plane.log_dir / 'kwok.log'})"
                    )

    def _write(self, kind: str, nonce: str) -> None:
        cluster = kind.startswith("Cluster")
        base = _base(kind)
        entry: dict[str, Any]
        if base == "PortForward":
            entry = {"ports": [_SENTINEL_PORT], "command": [_SH, "-c", f"printf %s {nonce}"]}
        elif base == "Exec":
            local = {"envs": [{"name": _NONCE_ENV, "value": nonce}]}
            entry = {"containers": [_SENTINEL_CONTAINER], "local": local}
        else:
            log = self.dir / f"{kind}.log"
            tmp = log.with_name(f".{log.name}.tmp")
            tmp.write_text(cri_log_line(nonce), encoding="utf-8")
            tmp.replace(log)
            entry = {"containers": [_SENTINEL_CONTAINER], "logsFile": str(log)}
        spec: dict[str, Any] = {_ENTRIES[base]: [entry]}
        metadata: dict[str, Any] = {"name": _SENTINEL_OBJECT}
        if cluster:
            spec["selector"] = {
                "matchNamespaces": [self.namespace],
                "matchNames": [_SENTINEL_CLUSTER_POD],
            }
        else:
            metadata["name"] = _SENTINEL_POD
            metadata["namespace"] = self.namespace
        body = {"apiVersion": KWOK_API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}
        path = _object_path(kind, metadata["name"], self.namespace)

        def replace(obj: dict[str, Any] | None) -> dict[str, Any]:
            if obj is None:
                return body
            obj["spec"] = spec
            return obj

        _update(self.plane, path, replace)

    def _probe(self, kind: str, nonce: str) -> bool:
        from kubernetes import client  # type: ignore[import-untyped, unused-ignore]
        from kubernetes.client import ApiException  # type: ignore[import-untyped, unused-ignore]
        from kubernetes.stream import (  # type: ignore[import-untyped, unused-ignore]
            portforward,
            stream,
        )

        pod = _SENTINEL_CLUSTER_POD if kind.startswith("Cluster") else _SENTINEL_POD
        core: Any = client.CoreV1Api(self.api)
        base = _base(kind)
        try:
            if base == "Logs":
                text = core.read_namespaced_pod_log(
                    pod, self.namespace, container=_SENTINEL_CONTAINER, _request_timeout=30
                )
                return nonce in str(text)
            if base == "Exec":
                out = stream(
                    core.connect_get_namespaced_pod_exec,
                    pod,
                    self.namespace,
                    container=_SENTINEL_CONTAINER,
                    command=[_SH, "-c", f'printf %s "${_NONCE_ENV}"'],
                    stdin=False,
                    stdout=True,
                    stderr=False,
                    tty=False,
                    _request_timeout=30,
                )
                return str(out) == nonce
            forward = portforward(
                core.connect_get_namespaced_pod_portforward,
                pod,
                self.namespace,
                ports=str(_SENTINEL_PORT),
            )
            try:
                return _read_exactly(forward.socket(_SENTINEL_PORT), len(nonce)) == nonce.encode()
            finally:
                forward.close()
        except ApiException:
            return False


def _read_exactly(sock: socket.socket, size: int, timeout: float = 30.0) -> bytes:
    """Up to ``size`` bytes (fewer at EOF or after ``timeout``)."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < size:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(size - len(data))
        except (TimeoutError, OSError):
            break
        if not chunk:
            break
        data += chunk
    return data


_sentinels_by_plane: weakref.WeakKeyDictionary[ControlPlane, _Sentinels] = (
    weakref.WeakKeyDictionary()
)
_sentinels_lock = threading.Lock()


def _sentinels(plane: ControlPlane) -> _Sentinels:
    with _sentinels_lock:
        sentinels = _sentinels_by_plane.get(plane)
        if sentinels is None:
            sentinels = _sentinels_by_plane[plane] = _Sentinels(plane)
        return sentinels
