"""Streams to pods through the API server: ``exec`` and port-forward (websockets of the official
client), for the notebook dev loop. With ``cluster.py`` the only modules that import
``kubernetes``. Failures to open a stream are ``Failure``s saying what to check.
"""

from __future__ import annotations

import time
from typing import Any

from substratus.engine.failure import Failure
from substratus.runtimes.kubernetes.cluster import Cluster


def _core(cluster: Cluster) -> Any:
    from kubernetes import client

    return client.CoreV1Api(cluster.api())


def exec_stream(
    cluster: Cluster, namespace: str, pod: str, container: str, command: list[str]
) -> Any:
    """A running ``exec`` of ``command`` (a ``kubernetes.stream`` WSClient: ``is_open``,
    ``update``, ``read_stdout``, ``read_stderr``, ``close``)."""
    from kubernetes.stream import stream

    cluster.counts.add("GET")  # a websocket upgrade
    try:
        return stream(
            _core(cluster).connect_get_namespaced_pod_exec,
            pod,
            namespace,
            command=command,
            container=container,
            stdin=False,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
        )
    except Exception as exc:  # the client raises ApiException or websocket errors
        raise Failure(
            f"cannot exec in pod {namespace}/{pod}: {exc}",
            "Check that the pod runs and that you may `pods/exec`.",
        ) from exc


def exec_output(
    cluster: Cluster,
    namespace: str,
    pod: str,
    container: str,
    command: list[str],
    timeout: float = 120.0,
) -> str:
    """The stdout of a finished ``exec`` (``Failure`` with its stderr on failure)."""
    ws = exec_stream(cluster, namespace, pod, container, command)
    out: list[str] = []
    err: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while ws.is_open() and time.monotonic() < deadline:
            ws.update(timeout=1)
            if ws.peek_stdout():
                out.append(ws.read_stdout())
            if ws.peek_stderr():
                err.append(ws.read_stderr())
        code = ws.returncode if not ws.is_open() else None
    finally:
        ws.close()
    if code not in (0, None) or (code is None and time.monotonic() >= deadline):
        raise Failure(
            f"`{command[0]}` in pod {namespace}/{pod} failed",
            "".join(err)[-2000:] or f"exit code {code}",
        )
    return "".join(out)


def portforward(cluster: Cluster, namespace: str, pod: str, port: int) -> Any:
    """A port-forward to the pod's ``port`` (``.socket(port)`` is a connected socket)."""
    from kubernetes.stream import portforward

    cluster.counts.add("GET")  # a websocket upgrade
    try:
        return portforward(
            _core(cluster).connect_get_namespaced_pod_portforward,
            pod,
            namespace,
            ports=str(port),
        )
    except Exception as exc:
        raise Failure(
            f"cannot port-forward to pod {namespace}/{pod}:{port}: {exc}",
            "Check that the pod runs and that you may `pods/portforward`.",
        ) from exc
