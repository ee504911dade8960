"""ModelServers and Notebooks: detached processes on a local port that stays theirs.

A server run (one version, ``RunRequest.version``) lives in ``runs/{ns}/{kind}s/{name}/{version}/``
with its ``content/``, ``log.txt`` and ``process.json`` (the outputs: pid, start time, port,
endpoint…). ``apply`` of the version an interrupted apply started adopts the live process
recorded there (waiting until healthy); otherwise it starts a new one in a new session and waits
until ``GET /`` is healthy (200 for servers, any answer below 500 for notebooks).

The endpoint is kept: a new process gets the port recorded before (the previous outputs, or
this run's ``process.json`` after a crash) so an in-place update, a restart after drift and a
re-apply after a crash keep the URL users call. Two processes cannot share a port, so the
previous process is stopped first and a local roll-out has a short gap (the time the new
process needs to answer ``GET /``); if it fails to start, nothing serves until the next apply.
When another program holds the recorded port, a free port is used and the move is reported as
a notice (``RunContext.notice``), never silently. A process that exits before it is healthy
fails with its log's tail, and with "No space left on device" when its run directory's file
system is full (its log may not hold why). A first start takes a free port.
``replicas: 0`` and ``suspend: true`` stop the process. Processes are signalled only when pid
and start time both match.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from substratus.engine import kinds
from substratus.engine.failure import Failure
from substratus.engine.runtime import Detached, RunContext, RunRequest
from substratus.runtimes.contract import quantization_env
from substratus.runtimes.local.artifacts import ArtifactStore
from substratus.runtimes.local.files import (
    disk_full,
    log_tail,
    read_json,
    remove_tree,
    write_json,
)
from substratus.runtimes.local.process import (
    ProcessRef,
    claim_port,
    free_port,
    http_status,
    port_free,
    stop,
)
from substratus.runtimes.local.workdir import RunFiles, Workdir
from substratus.runtimes.local.workload import (
    input_path,
    prepare_content,
    secret_env_names,
    workload_env,
)

DEFAULT_TIMEOUT = 120.0
NOTEBOOK_COMMAND = "notebook.sh"


def healthy(kind: str, status: int | None) -> bool:
    if status is None:
        return False
    return status < 500 if kind == "notebook" else status == 200


def idle(outputs: Mapping[str, Any]) -> bool:
    """Whether the recorded outputs say no process should run (replicas 0, suspended)."""
    return outputs.get("replicas") == 0 or outputs.get("suspended") is True


def _command(kind: str, spec: Mapping[str, Any], context: Path) -> list[str]:
    command = list((spec.get("container") or {}).get("command") or [])
    if command or kind != "notebook":
        return command
    for candidate in (context / NOTEBOOK_COMMAND, context / "scripts" / NOTEBOOK_COMMAND):
        if candidate.is_file():
            return [str(candidate)]
    return [NOTEBOOK_COMMAND]  # from $PATH, as in the images


@dataclass(frozen=True)
class _Launch:
    """A new process: its directory, command, input links and extra outputs."""

    context: Path
    command: list[str]
    links: dict[str, Path]
    extra: dict[str, Any]


class Servers:
    def __init__(self, workdir: Workdir, store: ArtifactStore, poll: float) -> None:
        self.workdir, self.store, self.poll = workdir, store, poll

    def run(self, request: RunRequest) -> RunFiles:
        return self.workdir.run(request.namespace, request.kind, request.name, request.run_version)

    def intent(self, request: RunRequest) -> dict[str, Any]:
        run = self.run(request)
        return {"run_dir": str(run.dir), "log": str(run.log)}

    def _notebook_artifacts(self, request: RunRequest) -> dict[str, Any]:
        path = self.store.notebook_dir(request.namespace, request.name)
        return {"artifacts": self.store.url_for(path), "artifacts_path": str(path)}

    def apply(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        run = self.run(request)
        spec = request.spec
        if request.kind == "modelserver" and spec.get("replicas", 1) == 0:
            self._stop_others(request, run, None, ctx)
            return {"replicas": 0}
        if kinds.suspended(request.kind, spec):
            self._stop_others(request, run, None, ctx)
            return {"suspended": True, **self._notebook_artifacts(request)}
        outputs = read_json(run.process)
        ref = ProcessRef.from_json(outputs)
        popen: subprocess.Popen[bytes] | None = None
        live = outputs is not None and ref is not None and ref.alive()
        if live and request.intent is None:
            raise Failure(f"the new run {run.dir} exists already", "apply again")
        if outputs is not None and ref is not None and live:
            ctx.phase(f"adopting pid {ref.pid}")
        else:
            launch = self._prepare(request)
            port = self._port(request, run, outputs, ctx)
            outputs, popen = self._start(request, run, launch, port)
            ref = ProcessRef.from_json(outputs)
        assert ref is not None
        self._wait_healthy(request, ref, popen, int(outputs["port"]), run, ctx)
        self._stop_others(request, run, ref, ctx)
        return outputs

    def _port(
        self,
        request: RunRequest,
        run: RunFiles,
        recorded: Mapping[str, Any] | None,
        ctx: RunContext,
    ) -> int:
        """The port for a new process: the one recorded before (its previous process stopped
        first), or a free one when there is none or another program holds it (said so)."""
        port = dict(request.prior_outputs or {}).get("port") or (recorded or {}).get("port")
        if not isinstance(port, int):
            return free_port()
        claim_port(port)
        self._stop_others(request, run, None, ctx)  # its previous process frees the port
        if port_free(port):
            return port
        new = free_port()
        ctx.notice(
            f"port {port} is in use by another program: the endpoint moves from "
            f"http://127.0.0.1:{port} to http://127.0.0.1:{new}"
        )
        return new

    def _prepare(self, request: RunRequest) -> _Launch:
        """What a new process runs, checked before anything is stopped or started."""
        spec, kind = request.spec, request.kind
        build = request.inputs.get("build") or {}
        context = build.get("context_dir")
        if kind == "notebook" and build.get("source_dir"):
            context = build["source_dir"]  # the dev loop: work in the user's directory itself
        if not context:
            raise Failure("cannot run locally: it needs a git or local source")
        command = _command(kind, spec, Path(str(context)))
        if not command:
            raise Failure("cannot run locally: container.command is not set")
        names = secret_env_names(spec)
        if names:
            raise Failure(
                f"the local runtime cannot read Kubernetes Secrets (env {', '.join(names)})"
            )
        links: dict[str, Path] = {}
        for role in ("data", "model"):
            path = input_path(request.inputs, role)
            if path is not None:
                links[role] = path
        if kind == "modelserver" and "model" not in links:
            raise Failure("no model input to serve")
        extra: dict[str, Any] = {}
        if kind == "notebook":
            extra = self._notebook_artifacts(request)
            links["artifacts"] = Path(extra["artifacts_path"])
        return _Launch(Path(str(context)), command, links, extra)

    def _start(
        self, request: RunRequest, run: RunFiles, launch: _Launch, port: int
    ) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
        spec, kind, extra = request.spec, request.kind, dict(launch.extra)
        if kind == "notebook":  # its persistent work directory
            launch.links["artifacts"].mkdir(parents=True, exist_ok=True)
        params = kinds.params(kind, spec)
        run.dir.mkdir(parents=True, exist_ok=True)
        prepare_content(run.content, params, launch.links)
        owned = {"CONTENT_DIR": str(run.content), "PORT": str(port)}
        endpoint = f"http://127.0.0.1:{port}"
        if kind == "notebook":
            token = secrets.token_urlsafe(16)
            owned["NOTEBOOK_TOKEN"] = token
            extra["url"] = f"{endpoint}/?token={token}"
        before = quantization_env(spec) if kind == "modelserver" else {}
        env = workload_env(params, spec, before, owned)
        try:
            with run.log.open("wb") as log:
                popen = subprocess.Popen(
                    launch.command,
                    cwd=str(launch.context),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise Failure(
                f"cannot start {launch.command[0]!r}: {exc}", log_path=str(run.log)
            ) from exc
        ref = ProcessRef.of(popen.pid) or ProcessRef(popen.pid, -1)
        outputs = {
            **ref.to_json(),
            "port": port,
            "endpoint": endpoint,
            "log": str(run.log),
            "run_dir": str(run.dir),
            **extra,
        }
        write_json(run.process, outputs)
        return outputs, popen

    def _wait_healthy(
        self,
        request: RunRequest,
        ref: ProcessRef,
        popen: subprocess.Popen[bytes] | None,
        port: int,
        run: RunFiles,
        ctx: RunContext,
    ) -> None:
        ctx.phase(f"waiting for http://127.0.0.1:{port}/ (pid {ref.pid})")
        timeout = ctx.timeout or DEFAULT_TIMEOUT
        started = time.monotonic()
        while True:
            code = popen.poll() if popen is not None else (None if ref.alive() else -1)
            if code is not None:
                ended = f" with code {code}" if code >= 0 and popen is not None else ""
                full = disk_full([run.dir])  # its log may not hold why
                ended += f" ({full})" if full else ""
                raise Failure(
                    f"{request.kind} process {ref.pid} exited{ended} before answering GET /",
                    log_tail(run.log),
                    str(run.log),
                )
            if healthy(request.kind, http_status(port, timeout=1.0)):
                return
            if ctx.cancelled.is_set():
                raise Detached(f"pid {ref.pid} goes on starting; the next apply adopts it")
            if time.monotonic() - started > timeout:
                stop(ref)
                raise Failure(
                    f"{request.kind} did not answer GET http://127.0.0.1:{port}/ "
                    f"within {timeout:g} s",
                    log_tail(run.log),
                    str(run.log),
                )
            time.sleep(self.poll)

    def _stop_others(
        self, request: RunRequest, run: RunFiles, keep: ProcessRef | None, ctx: RunContext
    ) -> None:
        """Stop the previously recorded process and any other live one of this digest."""
        candidates = [
            ProcessRef.from_json(dict(request.prior_outputs or {})),
            ProcessRef.from_json(read_json(run.process)),
        ]
        for ref in candidates:
            if ref is not None and ref != keep and ref.alive():
                ctx.phase(f"stopping pid {ref.pid}")
                stop(ref)
        previous = (request.prior_outputs or {}).get("run_dir")
        if previous and Path(str(previous)) != run.dir:  # its params.json may hold secrets
            RunFiles(Path(str(previous))).params.unlink(missing_ok=True)

    # -- refresh, delete ----------------------------------------------------------------------

    def status(
        self, kind: str, outputs: Mapping[str, Any]
    ) -> tuple[Literal["present", "missing", "degraded"], str]:
        """(status, message) of a recorded process."""
        ref = ProcessRef.from_json(dict(outputs))
        if idle(outputs) or ref is None:
            return "present", ""
        if not ref.alive():
            return "missing", f"process {ref.pid} is not running"
        port = outputs.get("port")
        status = http_status(int(port), timeout=2.0) if isinstance(port, int) else None
        if healthy(kind, status):
            return "present", ""
        answer = f"answered {status}" if status is not None else "did not answer"
        return "degraded", f"process {ref.pid} is running but GET / on port {port} {answer}"

    def pending(
        self, kind: str, run: RunFiles
    ) -> tuple[Literal["running", "completed", "gone"], str]:
        """(pending, message) of the process an interrupted apply started in ``run``."""
        outputs = read_json(run.process) or {}
        ref = ProcessRef.from_json(outputs)
        if ref is None or not ref.alive():
            return "gone", "the process started by an interrupted apply is not running"
        if self.status(kind, outputs)[0] == "present":
            return "completed", f"pid {ref.pid} started by an interrupted apply is healthy"
        return "running", f"pid {ref.pid} left running by an interrupted apply"

    def delete(
        self,
        namespace: str,
        kind: str,
        name: str,
        outputs: Mapping[str, Any],
        versions: Iterable[str],
        retain: bool,
    ) -> None:
        """Stop the recorded process and those of the given runs; remove those runs (and a
        notebook's work unless ``retain``)."""
        runs = [self.workdir.run(namespace, kind, name, v) for v in versions]
        refs = [ProcessRef.from_json(dict(outputs))]
        refs += [ProcessRef.from_json(read_json(run.process)) for run in runs]
        for ref in refs:
            if ref is not None:
                stop(ref)
        for run in runs:
            remove_tree(run.dir)
        with contextlib.suppress(OSError):
            self.workdir.resource_runs(namespace, kind, name).rmdir()
        if kind == "notebook" and not retain:
            self.store.remove(self.store.notebook_dir(namespace, name))

    def remove_run(self, namespace: str, kind: str, name: str, version: str) -> bool:
        """Remove a run no longer needed; False while its process still runs."""
        run = self.workdir.run(namespace, kind, name, version)
        ref = ProcessRef.from_json(read_json(run.process))
        if ref is not None and ref.alive():
            return False
        remove_tree(run.dir)
        return True
