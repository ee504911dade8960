"""Jobs: Dataset and Model loaders and trainers as supervised processes.

A job run makes one version (``RunRequest.version``): a run directory (``workdir.RunFiles``), a
partial output directory in the artifact store and a final version directory (for a remote
store, in its local mirror). ``apply`` of the version an interrupted apply started
(``RunRequest.intent``) adopts it when it is complete in the store, publishes it when it
completed only locally, or waits for the supervisor still running it; otherwise it takes the
run's ``flock`` and hands the run to the job host (``host.py``, through ``launcher``), which
supervises it holding that lock (``supervise.py``), and publishes its output when it succeeds;
the run's end is its lock let go (``runlock``). Inputs
are resolved by their own URL (``input_dir``: a gs:// version is fetched first). It raises
``Detached`` when cancelled (the job goes on) and ``Failure`` with the log tail when the job
fails — its message ends with the reason the supervisor recorded (a full disk: "No space left on
device", naming the file system) or, when the supervisor recorded nothing, a full disk found
now; a job that cannot be started (its run directory not prepared) is a ``Failure`` naming
the OS error. ``delete`` and ``remove_version`` stop what runs and remove the run directories
and versions they are given — those a state created — and nothing else. Refresh reads
``status``. A job on ``resources.nodes`` N above 1 is one supervisor process running N ranks
(``ranks.py``); stopping a run (``stop_run``) stops its ranks too, even those a killed
supervisor left, and never the job host, which other runs share.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from substratus.engine import kinds
from substratus.engine.attempts import FailedAttempt
from substratus.engine.failure import Failure
from substratus.engine.runtime import Detached, RunContext, RunRequest
from substratus.runtimes.local import attempts, launcher, ranks, runlock
from substratus.runtimes.local.artifacts import ArtifactStore, input_dir
from substratus.runtimes.local.files import disk_full, log_tail, read_json, remove_tree
from substratus.runtimes.local.process import ProcessRef, stop
from substratus.runtimes.local.workdir import RunFiles, Workdir
from substratus.runtimes.local.workload import (
    prepare_content,
    secret_env_names,
    supervisor_env,
    workload_env,
)


class _Locked:
    """``Jobs._start`` found the run's lock held by another process."""


LOCKED = _Locked()


@dataclass(frozen=True)
class JobNames:
    run: RunFiles
    partial: Path
    final: Path


def supervisor_of(run: RunFiles) -> ProcessRef | None:
    """The live supervisor of a run, if any: its own (``supervisor.json``), or the job host
    named in ``child.json``, which outlives the runs it supervises: one of its runs is live
    while the run's lock is held (``runlock``)."""
    data = read_json(run.supervisor)
    if data is None:
        host = (read_json(run.child) or {}).get("host")
        ref = ProcessRef.from_json(host if isinstance(host, dict) else None)
        return ref if ref is not None and ref.alive() and runlock.held(run.lock) else None
    ref = ProcessRef.from_json(data)
    return ref if ref is not None and ref.alive() else None


def stop_run(run: RunFiles, grace: float = 10.0) -> None:
    """Stop what runs in a run directory: its supervisor process with its command, or — a run
    of the job host, or one whose supervisor has not recorded itself yet — ask through
    ``RunFiles.stop``, stop the command and wait for the run's lock (never the host, which
    other runs share); and any rank a killed supervisor left."""
    supervisor = ProcessRef.from_json(read_json(run.supervisor))
    if supervisor is not None:
        stop(supervisor, grace)
    elif runlock.held(run.lock):
        with contextlib.suppress(OSError):
            run.stop.touch()  # before the command is read: an attempt starting sees it
        child = ProcessRef.from_json(read_json(run.child))
        if child is not None:
            stop(child, grace)
        runlock.LockWatch(run.lock).wait(grace + 5.0)
    child = ProcessRef.from_json(read_json(run.child))
    if child is not None:
        stop(child, grace)
    ranks.stop_ranks(run)


def exit_code_of(run: RunFiles) -> int | None:
    try:
        return int(run.exit_code.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def exit_reason_of(run: RunFiles) -> str:
    """Why the job failed, as its supervisor recorded it (second line of ``exit_code``)."""
    try:
        lines = run.exit_code.read_text().splitlines()
    except OSError:
        return ""
    return lines[1].strip() if len(lines) > 1 else ""


def _report_attempts(run: RunFiles, ctx: RunContext) -> int:
    """Report the failed attempts the run's supervisor recorded (``ctx.restart``: the walker
    keeps each once); the number of the last one, 0 when none failed."""
    found = attempts.read(run)
    for entry in found:
        number, why = int(entry["attempt"]), str(entry.get("reason", ""))
        ctx.restart(FailedAttempt(number, why, final=bool(entry.get("final"))))
    return int(found[-1]["attempt"]) if found else 0


class Jobs:
    def __init__(self, workdir: Workdir, store: ArtifactStore, poll: float) -> None:
        self.workdir, self.store, self.poll = workdir, store, poll

    def names(self, namespace: str, kind: str, name: str, version: str) -> JobNames:
        return JobNames(
            self.workdir.run(namespace, kind, name, version),
            self.store.partial_path_for(namespace, kind, name, version),
            self.store.path_for(namespace, kind, name, version),
        )

    def version_outputs(self, version: Path) -> dict[str, Any]:
        return {"artifacts": self.store.url_for(version), "artifacts_path": str(version)}

    def outputs(self, names: JobNames) -> dict[str, Any]:
        return {
            **self.version_outputs(names.final),
            "log": str(names.run.log),
            "run_dir": str(names.run.dir),
        }

    def _completed(self, names: JobNames) -> dict[str, Any]:
        """The outputs of a completed run, with its content fingerprint where the store keeps
        one (``manifest``: refresh compares it to notice changes made outside substratus)."""
        out = self.outputs(names)
        found = self.store.fingerprint(names.final)
        return {**out, "manifest": found} if found else out

    def newest_version(self, namespace: str, kind: str, name: str) -> Path | None:
        """The most recently completed version directory of a resource."""
        return self.store.newest(namespace, kind, name)

    def intent(self, names: JobNames) -> dict[str, Any]:
        return {**self.outputs(names), "partial_path": str(names.partial)}

    # -- apply --------------------------------------------------------------------------------

    def apply(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        names = self.names(request.namespace, request.kind, request.name, request.run_version)
        complete = self.store.complete(names.final)  # also checks the store can be written
        if request.intent is None and (complete or names.final.exists()):
            raise Failure(f"the new version {names.final} exists already", "apply again")
        if complete:
            _report_attempts(names.run, ctx)
            ctx.phase("adopted the run an interrupted apply completed")
            return self._completed(names)
        if names.final.is_dir():  # completed here, not yet published to a remote store
            _report_attempts(names.run, ctx)
            self.store.publish(names.final, ctx.phase)
            return self._completed(names)
        ref = supervisor_of(names.run) if request.intent is not None else None
        if ref is not None:
            ctx.phase(f"waiting for pid {ref.pid} started by an interrupted apply")
        else:
            ref = self._launch(request, names)
        if ref is not None:
            self._wait(request, ref, ctx, names.run)
        failed = _report_attempts(names.run, ctx)
        if names.final.is_dir():
            self.store.publish(names.final, ctx.phase)
            return self._completed(names)
        code = exit_code_of(names.run)
        # No exit code: its supervisor was killed, or could not write it on a full disk.
        reason = (
            exit_reason_of(names.run)
            if code is not None
            else disk_full([names.run.dir, names.partial]) or ""
        )
        why = f": {reason}" if reason else ""
        made = f" (attempt {failed} of {1 + kinds.retries(request.kind, request.spec)})"
        why = f"{made if failed else ''}{why}"
        detail, log = log_tail(names.run.log), str(names.run.log)
        if code is None:
            raise Failure(f"{request.kind} job was stopped before it finished{why}", detail, log)
        raise Failure(f"{request.kind} job exited with code {code}{why}", detail, log)

    def _launch(self, request: RunRequest, names: JobNames) -> ProcessRef | None:
        """Start a supervisor, or find the one another process is starting right now; None
        when the run completed meanwhile (nothing to wait for)."""
        deadline = time.monotonic() + 10.0
        while True:
            try:
                started = self._start(request, names)
            except OSError as exc:
                where = disk_full([names.run.dir, names.partial]) or ""
                what = f"cannot start the {request.kind} job in {names.run.dir}: {exc}"
                raise Failure(what, where) from exc
            if not isinstance(started, _Locked):
                return started
            ref = supervisor_of(names.run)
            if ref is not None:
                return ref
            if time.monotonic() > deadline:
                raise Failure(f"the run directory {names.run.dir} is locked by another process")
            time.sleep(self.poll)

    def _wait(self, request: RunRequest, ref: ProcessRef, ctx: RunContext, run: RunFiles) -> None:
        """Wait for the run to end: woken when the job host says so (``launcher.end_of``) or,
        for a run this process did not hand it, when its supervisor lets go of its lock
        (``runlock.LockWatch``); checking for cancellation and the timeout, and reporting
        failed attempts, every ``poll`` seconds meanwhile."""
        ctx.phase(f"running (pid {ref.pid})")
        deadline = None if ctx.timeout is None else time.monotonic() + ctx.timeout
        seen = 0
        watch = launcher.end_of(str(run.dir)) or runlock.LockWatch(run.lock)
        while True:
            failed = _report_attempts(run, ctx)
            if failed > seen:
                seen = failed
                ctx.phase(f"running (pid {ref.pid}), attempt {failed + 1}")
            if ctx.cancelled.is_set():
                raise Detached(f"the job goes on as pid {ref.pid}; the next apply adopts it")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                stop_run(run)
                raise Failure(f"{request.kind} job did not finish within {ctx.timeout:g} s")
            if watch.wait(self.poll if left is None else min(self.poll, left)):
                return

    def _inputs(self, request: RunRequest) -> tuple[Path, list[str], dict[str, Path]]:
        spec = request.spec
        command = list((spec.get("container") or {}).get("command") or [])
        context = (request.inputs.get("build") or {}).get("context_dir")
        if not context or not command:
            raise Failure(
                "cannot run locally: it needs a git or local container source and a command"
            )
        secrets = secret_env_names(spec)
        if secrets:
            raise Failure(
                f"the local runtime cannot read Kubernetes Secrets (env {', '.join(secrets)})"
            )
        links = {}
        for role in ("data", "model"):
            path = input_dir(request.inputs, role, self.workdir.root)
            if path is not None:
                if not path.is_dir():
                    raise Failure(f"the {role} input {path} does not exist", "apply it again")
                links[role] = path
        return Path(str(context)), command, links

    @staticmethod
    def _labels(request: RunRequest) -> list[str]:
        """What the version's manifest records about where it comes from."""
        labels = {
            "address": request.address,
            "digest": request.digest,
            "version": request.run_version,
            "lineage": request.owner.lineage or "",
            "workspace": request.owner.workspace,
        }
        return [f"{k}={v}" for k, v in labels.items()]

    def _start(self, request: RunRequest, names: JobNames) -> ProcessRef | _Locked | None:
        """Start a supervisor under the run's lock (the job host, through ``launcher``): its
        ref; ``LOCKED`` when another process holds the lock (or the job host was lost
        before it answered); None when the run completed meanwhile."""
        context, command, links = self._inputs(request)
        run = names.run
        try:
            run.dir.mkdir(parents=True)
            fresh = True  # made now: nothing an earlier attempt left is in it
        except FileExistsError:
            fresh = False
        fd = os.open(run.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return LOCKED
            if names.final.is_dir():  # completed since ``apply`` looked: by the supervisor
                return None  # another process started, or one a lost job host started
            self._prepare(request, names, links, fresh)
            env, unset = supervisor_env(
                workload_env(
                    kinds.params(request.kind, request.spec),
                    request.spec,
                    {},
                    {"CONTENT_DIR": str(run.content)},
                )
            )
            job = {
                "run_dir": str(run.dir),
                "partial": str(names.partial),
                "final": str(names.final),
                "label": self._labels(request),
                "unset": unset,
                "retries": kinds.retries(request.kind, request.spec),
                "command": command,
                "nodes": kinds.nodes(request.kind, request.spec),
            }
            log = os.open(run.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            try:
                ref = launcher.launch(job, context, env, fd, log)
            finally:
                os.close(log)
            return LOCKED if ref is None else ref
        finally:
            os.close(fd)

    @staticmethod
    def _prepare(request: RunRequest, names: JobNames, links: dict[str, Path], fresh: bool) -> None:
        """Clear what an earlier attempt left (stopping its orphaned command) and make a fresh
        partial output directory and content directory. ``fresh``: the run directory was made
        just now, so nothing of an earlier attempt is in it (its partial output may be)."""
        run = names.run
        if not fresh:
            orphan = ProcessRef.from_json(read_json(run.child))
            if orphan is not None:  # the command of a supervisor that was killed
                stop(orphan)
            ranks.stop_ranks(run)  # and its other ranks, on more than one node
            for stale in (run.exit_code, run.supervisor, run.child, run.attempts, run.stop):
                stale.unlink(missing_ok=True)
            ranks.ranks_file(run).unlink(missing_ok=True)
        remove_tree(names.partial)
        names.partial.mkdir(parents=True)
        params = kinds.params(request.kind, request.spec)
        prepare_content(run.content, params, {**links, "artifacts": names.partial}, fresh)

    # -- refresh, delete, garbage -------------------------------------------------------------

    def status(self, names: JobNames) -> tuple[Literal["running", "completed", "gone"], str]:
        """(pending, message) of the run an interrupted apply started."""
        if names.final.is_dir():
            return "completed", f"the interrupted job completed; artifacts at {names.final}"
        if self.store.complete(names.final):
            where = self.store.url_for(names.final)
            return "completed", f"the interrupted job completed; artifacts at {where}"
        ref = supervisor_of(names.run)
        if ref is not None:
            return "running", f"pid {ref.pid} left running by an interrupted apply"
        if runlock.held(names.run.lock):  # its supervisor is starting it
            return "running", "started by an interrupted apply"
        code, reason = exit_code_of(names.run), exit_reason_of(names.run)
        ended = f" (it exited with code {code})" if code is not None else ""
        ended = f"{ended[:-1]}: {reason})" if ended and reason else ended
        return "gone", f"the job started by an interrupted apply is no longer running{ended}"

    def delete(
        self,
        namespace: str,
        kind: str,
        name: str,
        versions: Iterable[str],
        retain_artifacts: bool,
        held: Set[str],
    ) -> None:
        """Stop and remove the given versions of a resource (keep the artifacts of those
        ``held`` by another state, and all of them with ``retain_artifacts``)."""
        for version in versions:
            names = self.names(namespace, kind, name, version)
            stop_run(names.run)
            remove_tree(names.run.dir)
            self.store.remove(names.partial)
            if kinds.removable(namespace, kind, name, version, held, retain_artifacts):
                self.store.remove(names.final)
        for base in (
            self.store.resource_dir(namespace, kind, name),
            self.workdir.resource_runs(namespace, kind, name),
        ):
            with contextlib.suppress(OSError):
                base.rmdir()

    def remove_version(
        self, namespace: str, kind: str, name: str, version: str, held: Set[str]
    ) -> bool:
        """Remove one version a state no longer needs (its artifacts, partial output and run
        directory); False while it still runs or another state holds it."""
        names = self.names(namespace, kind, name, version)
        if supervisor_of(names.run) is not None:
            return False
        if not kinds.removable(namespace, kind, name, version, held):
            return False
        self.store.remove(names.partial)
        self.store.remove(names.final)
        remove_tree(names.run.dir)
        return True
