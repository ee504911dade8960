"""A real Kubernetes control plane on 127.0.0.1 for tests: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok (fake nodes and pod lifecycles).

``ControlPlane.start(workdir)`` starts every component with free ports and returns once the
apiserver is ready, the fake GPU node ``kwok-gpu-0`` is Ready and the ``default`` ServiceAccount
exists in namespace ``default``; ``ControlPlane.stop()`` kills every component's process group
and removes ``workdir`` when ``start`` created it. Usable from bench scripts as is; the session
fixture ``kube_cluster`` wraps it for pytest (import it into ``tests/conftest.py``).

The cluster:

* authentication by bearer tokens (``--token-auth-file``): ``admin_token`` is user ``admin`` in
  group ``system:masters``; ``user_token`` is ``substratus-user``, no groups and no permissions
  (``--authorization-mode=RBAC``), for tests of what a restricted user may do;
* TLS is verified: the kubeconfigs trust the apiserver's self-signed serving certificate
  (``cert-dir/apiserver.crt``, its own CA included), never ``insecure-skip-tls-verify``;
* kubeconfigs: ``kubeconfig`` (context ``admin``), ``user_kubeconfig`` (context ``user``) and
  ``combined_kubeconfig`` (both contexts, current ``admin``);
* one fake node ``kwok-gpu-0``: labels ``type: kwok``, ``kubernetes.io/hostname`` and
  ``cloud.google.com/gke-accelerator: nvidia-l4``; cpu 256, memory 2Ti, ephemeral-storage 10Ti,
  pods 3000 and ``nvidia.com/gpu`` 64. kwok v0.7.0's built-in stages drive pods bound to it:
  every pod becomes Running and Ready within a second, pods owned by a Job then go to Succeeded
  (exit 0, so Jobs complete; kwok never fails a pod), and a pod being deleted loses ALL its
  finalizers (foreign ones too) and is removed at once, ignoring its grace period (so
  foreground deletes of Jobs and Deployments finish). Pods not bound to the node (unschedulable)
  stay Pending;
* logs, exec and port-forward of the node's pods work: kwok's kubelet-like server listens on
  ``kwok_server`` (127.0.0.1, the node's ``InternalIP`` and daemon-endpoint port; the
  apiserver's serving certificate) and answers from mapping objects of API group
  ``kwok.x-k8s.io/v1alpha1`` (``KWOK_STREAM_KINDS``: CRDs created at start, watched by kwok
  with ``--enable-crds``). Without a mapping such a request fails (``no logs found…``).
  ``tests/support/kube_streams.py`` writes the mappings; commands exec'd in pods run on this
  machine as kwok's children, with ``kwok_bin_dir`` first on kwok's PATH. The apiserver does not
  verify kubelet serving certificates (no ``--kubelet-certificate-authority``, as on most
  clusters; the suite's own fake kubelets rely on it).

Binaries (versions pinned by ``scripts/kube-assets.sh``, which builds them) are looked up in
``$SUBSTRATUS_KUBE_ASSETS``, else the default cache directory
``${XDG_CACHE_HOME:-~/.cache}/substratus/kube/<versions>/bin``; ``kube-apiserver`` and ``etcd``
may also come from ``$KUBEBUILDER_ASSETS`` (the envtest convention). Without them the fixture
skips, or fails when ``$CI`` is set, naming the build command.

Every component logs to a file in ``log_dir``; a start failure raises ``KubeStartError`` with the
tail of the failing component's log.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ci import in_ci

K8S_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.7.0"
ASSETS_KEY = f"k8s-{K8S_VERSION}_etcd-{ETCD_VERSION}_kwok-{KWOK_VERSION}"
ASSETS_ENV = "SUBSTRATUS_KUBE_ASSETS"
ENVTEST_ENV = "KUBEBUILDER_ASSETS"
BUILD_COMMAND = "bash scripts/kube-assets.sh"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
ENVTEST_COMPONENTS = ("etcd", "kube-apiserver")

FAKE_NODE = "kwok-gpu-0"
GPU_RESOURCE = "nvidia.com/gpu"
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_GROUP = "kwok.x-k8s.io"
KWOK_API_VERSION = f"{KWOK_GROUP}/v1alpha1"
# kwok's kubelet-like server serves logs, exec and port-forward from these kinds, watched as CRDs
# (``--enable-crds``); one namespaced object per pod (named after it), or a cluster-scoped one
# selecting pods by namespace and name.
KWOK_STREAM_KINDS = (
    "PortForward",
    "ClusterPortForward",
    "Exec",
    "ClusterExec",
    "Logs",
    "ClusterLogs",
)
ADMIN_USER = "admin"
RESTRICTED_USER = "substratus-user"
CLUSTER_NAME = "substratus-test"

START_TIMEOUT = 180.0  # whole start-up; typically well under 15 s (bounds for a loaded machine)
NAMESPACE_TIMEOUT = 120.0
_STOP_GRACE = 5.0
_ATTEMPTS = 3  # ports are picked before they are bound: retry on a clash

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_namespace_counter = itertools.count(1)
_live: set[ControlPlane] = set()  # stopped at interpreter exit, whatever happens


class KubeAssetsUnavailable(RuntimeError):
    """The control-plane binaries are not on this machine; the message says how to build them."""


class KubeStartError(RuntimeError):
    """A component did not come up; the message carries the tail of its log."""


# --- binaries -------------------------------------------------------------------------------


def default_assets_dir() -> Path:
    """Where ``scripts/kube-assets.sh`` puts the binaries unless ``$SUBSTRATUS_KUBE_ASSETS``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "substratus" / "kube" / ASSETS_KEY / "bin"


@dataclass(frozen=True)
class KubeAssets:
    bin_dir: Path  # the primary directory ($SUBSTRATUS_KUBE_ASSETS or the default cache dir)
    binaries: Mapping[str, Path]  # component name -> executable


def find_kube_assets() -> KubeAssets:
    """Locate every component; raise ``KubeAssetsUnavailable`` naming what is missing."""
    override = os.environ.get(ASSETS_ENV, "").strip()
    bin_dir = Path(override) if override else default_assets_dir()
    envtest = os.environ.get(ENVTEST_ENV, "").strip()
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in COMPONENTS:
        candidates = [bin_dir / name]
        if envtest and name in ENVTEST_COMPONENTS:
            candidates.append(Path(envtest) / name)
        for path in candidates:
            if path.is_file() and os.access(path, os.X_OK):
                found[name] = path
                break
        else:
            missing.append(" or ".join(str(p) for p in candidates))
    if missing:
        source = f"${ASSETS_ENV}" if override else "the default cache directory"
        raise KubeAssetsUnavailable(
            f"Kubernetes test binaries missing ({source}): {', '.join(missing)}. "
            f"Build them with `{BUILD_COMMAND}` (needs Go and the Go module proxy; prints the "
            f"bin directory, which can be passed as ${ASSETS_ENV})."
        )
    return KubeAssets(bin_dir=bin_dir, binaries=found)


# --- processes ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn giving the child SIGKILL when this process dies (Linux, main thread only:
    PR_SET_PDEATHSIG fires when the forking *thread* exits)."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return preexec


@dataclass(eq=False)
class _Component:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def exited(self) -> bool:
        return self.proc.poll() is not None


def _spawn(
    name: str, args: list[str], log_dir: Path, env: Mapping[str, str] | None = None
) -> _Component:
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:  # a file, never a pipe nobody reads
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(log_dir),
            env=None if env is None else dict(env),
            start_new_session=True,  # its own process group, killed as a whole
            preexec_fn=_die_with_parent(),
        )
    return _Component(name=name, proc=proc, log=log)


def _signal_group(component: _Component, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(component.proc.pid, sig)


def _stop_components(components: list[_Component]) -> None:
    """Stop in reverse start order, one at a time: the clients first, then the apiserver (about
    1 s of graceful shutdown once its clients are gone), then etcd. All at once is slower: an
    apiserver that loses etcd first, or etcd with live clients, waits out its grace period."""
    for component in reversed(components):
        _signal_group(component, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            component.proc.wait(timeout=_STOP_GRACE)
        _signal_group(component, signal.SIGKILL)  # also any child left in the group
        with contextlib.suppress(subprocess.TimeoutExpired):
            component.proc.wait(timeout=5.0)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"--- {path}: no log ---"
    tail = text.splitlines()[-lines:]
    return f"--- {path} (last {len(tail)} lines) ---\n" + ("\n".join(tail) or "(empty)")


def _service_account_key(path: Path) -> None:
    """An RSA private key for service-account tokens: the openssl CLI, else ``cryptography``."""
    openssl = shutil.which("openssl")
    if openssl:
        result = subprocess.run(
            [openssl, "genrsa", "-out", str(path), "2048"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        if result.returncode == 0:
            return
        raise KubeStartError(
            f"openssl genrsa failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
        )
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError as exc:
        raise KubeStartError(
            "need the openssl CLI or the cryptography package to make a key"
        ) from exc
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


# --- HTTP helpers (stdlib, no proxy) ---------------------------------------------------------


def _request(
    server: str,
    ca_file: Path,
    token: str,
    method: str,
    path: str,
    body: object | None = None,
    timeout: float = 30.0,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=str(ca_file))
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    https = urllib.request.HTTPSHandler(context=context)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), https)
    try:
        with opener.open(request, timeout=timeout) as response:
            raw = response.read()
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = int(exc.code)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


# --- the control plane ----------------------------------------------------------------------


@dataclass(eq=False)
class ControlPlane:
    """A running control plane. Create with ``ControlPlane.start``; stop with ``stop()``."""

    workdir: Path
    bin_dir: Path
    log_dir: Path
    server: str  # https://127.0.0.1:<port>
    ca_file: Path  # the apiserver's self-signed serving certificate bundle
    kubeconfig: Path  # admin, context "admin"
    user_kubeconfig: Path  # the restricted user, context "user"
    combined_kubeconfig: Path  # both contexts, current "admin"
    admin_token: str
    user_token: str
    startup_seconds: float = 0.0
    owns_workdir: bool = False
    kwok_server: str = ""  # https://127.0.0.1:<port>: kwok's kubelet-like server (ca_file)
    kwok_bin_dir: Path | None = None  # first on kwok's PATH (commands exec'd in pods)
    components: list[_Component] = field(default_factory=list, repr=False)

    # -- lifecycle

    @classmethod
    def start(cls, workdir: Path | None = None, assets: KubeAssets | None = None) -> ControlPlane:
        """Start every component under ``workdir`` (a fresh temporary directory, removed by
        ``stop()``, when None). Raises ``KubeAssetsUnavailable``, or ``KubeStartError`` after
        stopping what had started (the working directory is then kept for its logs)."""
        assets = assets or find_kube_assets()
        owns = workdir is None
        root = Path(tempfile.mkdtemp(prefix="substratus-kube-")) if workdir is None else workdir
        root.mkdir(parents=True, exist_ok=True)
        failures: list[str] = []
        for attempt in range(1, _ATTEMPTS + 1):
            plane = cls._prepare(root / f"attempt-{attempt}" if attempt > 1 else root, assets)
            plane.workdir, plane.owns_workdir = root, owns
            try:
                plane._boot(assets)
            except BaseException as exc:
                plane._stop_processes()
                if not isinstance(exc, KubeStartError):
                    if owns:
                        shutil.rmtree(root, ignore_errors=True)
                    raise
                failures.append(str(exc))
                if "address already in use" in str(exc) and attempt < _ATTEMPTS:
                    continue
                raise KubeStartError(
                    "\n\n".join(failures) + f"\n(all logs kept in {root})"
                ) from None
            _live.add(plane)
            return plane
        raise AssertionError("unreachable: the last attempt returns or raises")

    def stop(self, remove_workdir: bool | None = None) -> None:
        """Kill every component (process group, SIGTERM then SIGKILL) and remove the working
        directory if ``start`` created it (or if ``remove_workdir``). Idempotent."""
        _live.discard(self)
        self._stop_processes()
        if self.owns_workdir if remove_workdir is None else remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_processes(self) -> None:
        _stop_components(self.components)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return bool(self.components) and not any(c.exited() for c in self.components)

    def dead_components(self) -> list[str]:
        return [f"{c.name} (exit {c.proc.returncode})" for c in self.components if c.exited()]

    # -- clients

    def api_client(self, user: bool = False) -> Any:
        """An official ``kubernetes.client.ApiClient`` from the admin (or restricted user's)
        kubeconfig: the same path a provider takes. Close it (``with``) when done."""
        from kubernetes import config  # type: ignore[import-untyped, unused-ignore]

        path = self.user_kubeconfig if user else self.kubeconfig
        return config.new_client_from_config(  # type: ignore[no-untyped-call, unused-ignore]
            config_file=str(path), context="user" if user else "admin", persist_config=False
        )

    def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        user: bool = False,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """A raw API call with the admin (or restricted) token: ``(status, decoded JSON)``;
        ``content_type`` for patches (e.g. ``application/merge-patch+json``)."""
        token = self.user_token if user else self.admin_token
        return _request(
            self.server, self.ca_file, token, method, path, body, content_type=content_type
        )

    def new_namespace(self, prefix: str = "t") -> str:
        """Create a uniquely named namespace; return its name once its ``default``
        ServiceAccount exists (pods are rejected until then)."""
        clean = re.sub(r"[^a-z0-9-]", "-", prefix.lower()).strip("-")[:40] or "t"
        name = f"{clean}-{next(_namespace_counter)}-{uuid.uuid4().hex[:6]}"
        from kubernetes import client  # type: ignore[import-untyped, unused-ignore]

        with self.api_client() as api:
            core: Any = client.CoreV1Api(api)  # Any: a plain dict body, as every client accepts
            core.create_namespace({"metadata": {"name": name}})
        self._wait(
            f"ServiceAccount default in namespace {name}",
            lambda: (
                self.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200
            ),
            time.monotonic() + NAMESPACE_TIMEOUT,
            "kube-controller-manager",
        )
        return name

    # -- start-up steps

    @classmethod
    def _prepare(cls, root: Path, assets: KubeAssets) -> ControlPlane:
        log_dir = root / "logs"
        kwok_bin_dir = root / "kwok-bin"
        for directory in (root, log_dir, root / "certs", root / "etcd", kwok_bin_dir):
            directory.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        server = f"https://127.0.0.1:{port}"
        return cls(
            workdir=root,
            bin_dir=assets.bin_dir,
            log_dir=log_dir,
            server=server,
            ca_file=root / "certs" / "apiserver.crt",
            kubeconfig=root / "admin.kubeconfig",
            user_kubeconfig=root / "user.kubeconfig",
            combined_kubeconfig=root / "kubeconfig",
            admin_token=secrets.token_hex(24),
            user_token=secrets.token_hex(24),
            kwok_server=f"https://127.0.0.1:{_free_port()}",
            kwok_bin_dir=kwok_bin_dir,
        )

    def _boot(self, assets: KubeAssets) -> None:
        began = time.monotonic()
        deadline = began + START_TIMEOUT
        root = self.log_dir.parent
        bins = assets.binaries
        sa_key = root / "sa.key"
        _service_account_key(sa_key)
        tokens = root / "tokens.csv"
        tokens.write_text(
            f'{self.admin_token},{ADMIN_USER},{ADMIN_USER}-uid,"system:masters"\n'
            f"{self.user_token},{RESTRICTED_USER},{RESTRICTED_USER}-uid\n",
            encoding="utf-8",
        )
        tokens.chmod(0o600)
        etcd_port, peer_port = _free_port(), _free_port()
        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(bins["etcd"]),
                "--name=node0",
                f"--data-dir={root / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=node0={peer_url}",
                "--unsafe-no-fsync=true",
            ],
        )
        secure_port = self.server.rsplit(":", 1)[1]
        self._spawn(
            "kube-apiserver",
            [
                str(bins["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={secure_port}",
                f"--cert-dir={root / 'certs'}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=true",  # /readyz, /version for anyone, as on real clusters
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                # kwok's node has one address, InternalIP 127.0.0.1 (see the module doc on
                # kubelet TLS)
                "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
            ],
        )
        self._wait(
            "the apiserver's serving certificate",
            # the bundle is complete once it holds the serving certificate and its own CA
            lambda: self.ca_file.is_file() and self.ca_file.read_bytes().count(b"END CERT") >= 2,
            deadline,
            "kube-apiserver",
        )
        self._write_kubeconfigs()
        kubeconfig = f"--kubeconfig={self.kubeconfig}"
        self._spawn(
            "kube-controller-manager",
            [
                str(bins["kube-controller-manager"]),
                kubeconfig,
                "--leader-elect=false",
                "--secure-port=0",
                "--controllers=*",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={self.ca_file}",
                "--use-service-account-credentials=false",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-job-syncs=10",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--concurrent-gc-syncs=30",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(bins["kube-scheduler"]),
                kubeconfig,
                "--leader-elect=false",
                "--secure-port=0",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
        )
        kwok_config = root / "kwok.yaml"
        # A config of our own, so a developer's ~/.kwok/kwok.yaml is never picked up. It holds
        # no Stage: kwok v0.7.0 then uses its built-in node and pod stages (see module doc).
        kwok_config.write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions: {}\n",
            encoding="utf-8",
        )
        self._wait(
            "GET /readyz = 200",
            lambda: self.request("GET", "/readyz")[0] == 200,
            deadline,
            "kube-apiserver",
        )
        # kwok lists the stream kinds once at start and retries with a back-off of a second
        # or more: their CRDs are served before kwok starts.
        for kind in KWOK_STREAM_KINDS:
            crd = _kwok_crd(kind)
            path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
            status, body = self.request("POST", path, crd)
            if status != 201:
                raise KubeStartError(f"creating CRD {crd['metadata']['name']}: {status} {body}")
        status, body = self.request("POST", "/api/v1/nodes", _fake_node())
        if status != 201:
            raise KubeStartError(f"creating node {FAKE_NODE}: {status} {body}")
        self._wait(
            "the kwok stream kinds served",
            lambda: all(
                self.request("GET", kwok_path(kind, namespace="default"))[0] == 200
                for kind in KWOK_STREAM_KINDS
            ),
            deadline,
            "kube-apiserver",
        )
        kwok_address = self.kwok_server.removeprefix("https://")
        # kwok's PATH starts with kwok_bin_dir: commands exec'd "in a pod" are looked up there
        # first (tests/support/kube_streams.py puts per-pod command shims there).
        kwok_env = dict(os.environ)
        kwok_env["PATH"] = os.pathsep.join(
            [str(self.kwok_bin_dir), *filter(None, [kwok_env.get("PATH", os.defpath)])]
        )
        self._spawn(
            "kwok",
            [
                str(bins["kwok"]),
                kubeconfig,
                f"--config={kwok_config}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                "--node-lease-duration-seconds=40",
                # the kubelet-like server (logs, exec, port-forward) on the node's address and
                # port, with the apiserver's certificate (trusted through ca_file)
                f"--server-address={kwok_address}",
                "--node-ip=127.0.0.1",
                f"--node-port={kwok_address.rsplit(':', 1)[1]}",
                f"--tls-cert-file={self.ca_file}",
                f"--tls-private-key-file={self.ca_file.with_name('apiserver.key')}",
                f"--enable-crds={','.join(KWOK_STREAM_KINDS)}",
            ],
            env=kwok_env,
        )
        self._wait(f"node {FAKE_NODE} Ready", self._node_ready, deadline, "kwok")
        self._wait(
            "ServiceAccount default in namespace default",
            lambda: (
                self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200
            ),
            deadline,
            "kube-controller-manager",
        )
        self.startup_seconds = time.monotonic() - began

    def _spawn(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> None:
        self.components.append(_spawn(name, args, self.log_dir, env))

    def _node_ready(self) -> bool:
        status, body = self.request("GET", f"/api/v1/nodes/{FAKE_NODE}")
        if status != 200 or not isinstance(body, dict):
            return False
        conditions = body.get("status", {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _wait(self, what: str, check: Callable[[], bool], deadline: float, suspect: str) -> None:
        """Poll ``check`` until true; on timeout or a dead component raise ``KubeStartError``
        with the log tail of the dead component (else of ``suspect``)."""
        last_error = ""
        while True:
            dead = [c for c in self.components if c.exited()]
            if dead:
                raise KubeStartError(
                    f"waiting for {what}: "
                    + ", ".join(f"{c.name} exited with {c.proc.returncode}" for c in dead)
                    + "\n"
                    + "\n".join(_tail(c.log) for c in dead)
                )
            try:
                if check():
                    return
            except (OSError, ssl.SSLError, ValueError) as exc:
                last_error = f" (last error: {exc})"
            if time.monotonic() > deadline:
                logs = [c.log for c in self.components if c.name == suspect]
                raise KubeStartError(
                    f"timed out waiting for {what}{last_error}\n"
                    + "\n".join(_tail(log) for log in logs)
                )
            time.sleep(0.05)

    def _write_kubeconfigs(self) -> None:
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        cluster = {
            "name": CLUSTER_NAME,
            "cluster": {"server": self.server, "certificate-authority-data": ca_data},
        }
        users = {
            "admin": {"name": ADMIN_USER, "user": {"token": self.admin_token}},
            "user": {"name": RESTRICTED_USER, "user": {"token": self.user_token}},
        }

        def context(name: str) -> dict[str, Any]:
            user = users[name]["name"]
            ctx = {"cluster": CLUSTER_NAME, "user": user, "namespace": "default"}
            return {"name": name, "context": ctx}

        def write(path: Path, names: list[str]) -> None:
            doc = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [users[n] for n in names],
                "contexts": [context(n) for n in names],
                "current-context": names[0],
                "preferences": {},
            }
            path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
            path.chmod(0o600)

        write(self.kubeconfig, ["admin"])
        write(self.user_kubeconfig, ["user"])
        write(self.combined_kubeconfig, ["admin", "user"])


def node_manifest(
    name: str,
    labels: Mapping[str, str],
    *,
    gpus: int = 8,
    cpu: str = "64",
    memory: str = "512Gi",
    storage: str = "1Ti",
    pods: str = "110",
    kwok: bool = True,
) -> dict[str, Any]:
    """A Node for the test cluster (``labels`` added to ``kubernetes.io/hostname``), with equal
    capacity and allocatable; ``kwok``: annotated so kwok runs it (else the test plays its
    kubelet)."""
    resources = {
        "cpu": cpu,
        "memory": memory,
        "ephemeral-storage": storage,
        "pods": pods,
        GPU_RESOURCE: str(gpus),
    }
    meta: dict[str, Any] = {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}}
    if kwok:
        meta["annotations"] = {KWOK_ANNOTATION: "fake"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta,
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


def _fake_node() -> dict[str, Any]:
    labels = {
        "type": "kwok",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        ACCELERATOR_LABEL: "nvidia-l4",
    }
    return node_manifest(
        FAKE_NODE, labels, gpus=64, cpu="256", memory="2Ti", storage="10Ti", pods="3000"
    )


def _kwok_plural(kind: str) -> str:
    """``PortForward`` -> ``portforwards``, ``ClusterLogs`` -> ``clusterlogs`` (kwok's names)."""
    lower = kind.lower()
    return lower if lower.endswith("logs") else lower + "s"


def kwok_path(kind: str, name: str = "", namespace: str | None = None) -> str:
    """The API path of a kwok stream object (``KWOK_STREAM_KINDS``): namespaced kinds need
    ``namespace``; without ``name``, the collection."""
    if kind not in KWOK_STREAM_KINDS:
        raise ValueError(f"not a kwok stream kind: {kind!r}")
    if not kind.startswith("Cluster") and not namespace:
        raise ValueError(f"{kind} is namespaced: give a namespace")
    scope = "" if kind.startswith("Cluster") else f"/namespaces/{namespace}"
    return f"/apis/{KWOK_API_VERSION}{scope}/{_kwok_plural(kind)}" + (f"/{name}" if name else "")


def _kwok_crd(kind: str) -> dict[str, Any]:
    """A CustomResourceDefinition for one of ``KWOK_STREAM_KINDS``: the spec schema of
    sigs.k8s.io/kwok v0.7.0 (``pkg/apis/v1alpha1``, ``kustomize/crd/bases``) without its
    descriptions, so unknown or misspelt fields are pruned (or rejected with strict field
    validation) as on a cluster that installed kwok's own CRDs."""

    def obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            schema["required"] = list(required)
        return schema

    def array(items: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": items}

    string, strings = {"type": "string"}, array({"type": "string"})
    integer = {"type": "integer", "format": "int64"}
    base = kind.removeprefix("Cluster")
    if base == "PortForward":
        target = obj({"port": {"type": "integer", "format": "int32"}, "address": string})
        target["required"] = ["port", "address"]
        entry = obj(
            {
                "ports": array({"type": "integer", "format": "int32"}),
                "target": target,
                "command": strings,
            }
        )
        field_name = "forwards"
    elif base == "Exec":
        env = obj({"name": {"type": "string", "minLength": 1}, "value": string}, ("name",))
        security = obj({"runAsUser": integer, "runAsGroup": integer})
        local = obj({"workDir": string, "envs": array(env), "securityContext": security})
        entry = obj({"containers": strings, "local": local})
        field_name = "execs"
    else:
        entry = obj(
            {
                "containers": strings,
                "logsFile": string,
                "previousLogsFile": string,
                "follow": {"type": "boolean"},
            }
        )
        field_name = "logs"
    spec_props: dict[str, Any] = {field_name: array(entry)}
    if kind.startswith("Cluster"):
        spec_props["selector"] = obj({"matchNamespaces": strings, "matchNames": strings})
    status = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema = obj(
        {
            "apiVersion": string,
            "kind": string,
            "metadata": {"type": "object"},
            "spec": obj(spec_props, (field_name,)),
            "status": status,
        },
        ("metadata", "spec"),
    )
    plural = _kwok_plural(kind)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{KWOK_GROUP}"},
        "spec": {
            "group": KWOK_GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": plural if plural.endswith("logs") else plural[:-1],
            },
            "scope": "Cluster" if kind.startswith("Cluster") else "Namespaced",
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


@atexit.register
def _stop_all() -> None:
    for plane in list(_live):
        plane.stop()


def _report(request: pytest.FixtureRequest, line: str) -> None:
    """One line on the terminal, past pytest's output capture."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(line)


@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """One control plane for the whole session (see the module docstring). Use
    ``kube_cluster.new_namespace(prefix)`` for per-test isolation."""
    try:
        assets = find_kube_assets()
    except KubeAssetsUnavailable as exc:
        if in_ci():
            pytest.fail(f"Kubernetes test control plane required in CI: {exc}", pytrace=False)
        pytest.skip(str(exc))
    plane = ControlPlane.start(assets=assets)
    _report(
        request,
        f"kube_cluster: control plane up in {plane.startup_seconds:.1f} s at {plane.server}",
    )
    try:
        yield plane
    finally:
        plane.stop()
