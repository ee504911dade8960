"""The walker: applies a ``Plan`` in dependency order (DESIGN §6).

Contracts:
- Creates/updates/replaces run after everything they take inputs from; deletes run after the
  deletes of their dependents (reverse order). At most ``parallelism`` run at once.
- Before a resource's work starts, its *intent* (the deterministic names the runtime will use)
  is persisted as a pending operation; when it completes, its record is persisted — before any
  dependent starts. A crash at any point therefore loses nothing that finished, and the next
  plan can find or adopt what was left running. Writes are group-committed: one write at a
  time, each taking every change made before it started, so runs that end while the state is
  being written share the next write (one journal line, one ``fsync``), and a run waits only
  for the write that holds its change.
- A failure stops only the failed node's dependents (reported as skipped: upstream failed); the
  rest finishes. A failed run leaves the previous record (and version) in place; a failed first
  run leaves a ``tainted`` record without a digest that keeps the runtime's intent, so what the
  run left behind is replaced by the next apply and removed by destroy.
- ``cancel()`` (Ctrl-C) stops starting new work; running work is detached (it stays pending in
  the state and a later apply adopts it); the state is persisted.
- A state write conflict (``StateConflict``: another process changed the state), a state that
  cannot be written (``StateUnwritable``: the backend's ``DiagnosticError``, e.g. a full disk)
  or a lost lock (``LockLost``, from the ``LockWatch`` the walker is given) stops the walk the
  same way: nothing new starts, running work is detached, and ``ApplyResult.stopped`` says why,
  once ("state write conflict: …", the backend's message, "lock lost: …"). A run that
  completed but could not be recorded is reported detached: the next apply adopts it.
- It schedules on ``graph`` (node → the nodes it waits for, ``apply_graph`` by default) with a
  ``graphlib.TopologicalSorter``, starting ready nodes in address order, woken by each node's
  end (a queue its future's callback fills, not a poll of every running node); every change
  of the record goes through the ``StateFile`` transition methods (``begin``, ``complete``,
  ``fail``, ``remove``, ``drop_versions``).
- Every run makes a new version (``statefile.new_version``), named and added to the record's
  ``versions`` before it starts; only the pending run of an interrupted apply at the same digest
  is adopted (its version again). A record-only update (``ResourceChange.record_only``) rewrites
  the record without calling the runtime.
- After a successful apply, the versions this state created and no longer keeps are handed to
  the runtime's garbage collection (with the versions of other states it uses, so they are kept);
  what it removed is dropped from the records.
- A run's failed attempts (``spec.retries``), as the runtime reports them
  (``RunContext.restart``), each once: a ``restart`` event for each that is followed by
  another attempt, and all of them in the run's record (``RunRecord.attempts``).
- The walker never branches on kinds or reasons: it calls the ``Runtime`` with typed requests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import heapq
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any

from substratus.engine.address import Address
from substratus.engine.attempts import Attempts, FailedAttempt
from substratus.engine.backend import (
    Backend,
    LockLost,
    LockWatch,
    StateConflict,
    StateUnwritable,
)
from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.digest import rekeyed
from substratus.engine.failure import Failure
from substratus.engine.plan import Action, DriftStatus, Mode, Plan, ResourceChange
from substratus.engine.runtime import (
    DeleteRequest,
    Detached,
    Garbage,
    Held,
    Owner,
    RunContext,
    RunRequest,
    Runtime,
)
from substratus.engine.sensitive import reveal, seal
from substratus.engine.statefile import (
    DIGEST_FORMAT,
    AttemptRecord,
    PendingOperation,
    ResourceRecord,
    RunRecord,
    StateFile,
    new_version,
    now_iso,
)


class EventKind(enum.StrEnum):
    """What an ``Event`` reports (a ``str``: ``--json`` prints its value)."""

    START = "start"
    PHASE = "phase"
    NOTICE = "notice"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    DETACHED = "detached"
    RESTART = "restart"  # an attempt of a run failed; ``spec.retries`` starts it again


@dataclass(frozen=True)
class Event:
    kind: EventKind
    address: str
    action: Action
    message: str = ""
    elapsed: float = 0.0
    detail: str = ""
    attempt: FailedAttempt | None = None  # RESTART: the attempt that failed


@dataclass
class ApplyResult:
    done: list[str] = field(default_factory=list)
    failed: dict[str, Failure] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    detached: list[str] = field(default_factory=list)
    interrupted: bool = False  # cancelled (Ctrl-C)
    stopped: Failure | None = None  # a state write conflict or a lost lock stopped the walk

    @property
    def ok(self) -> bool:
        return not (
            self.failed or self.skipped or self.detached or self.interrupted or self.stopped
        )


def said_once(message: str, address: str) -> str:
    """``message`` without a leading ``ADDRESS: ``: every event and failure is shown after its
    resource's address, so a runtime's message that names it again would say it twice."""
    return message.removeprefix(f"{address}: ")


def apply_graph(plan: Plan, state: StateFile) -> dict[str, set[str]]:
    """What each change of ``plan`` waits for (only other changes of it). A create/update/replace
    waits for its inputs. A delete waits for every other change of a resource that depended on
    it in the state, or whose unfinished run was started with it (a dependent's delete, or its
    switch to something else), so nothing is deleted while in use."""
    nodes = {c.address: c for c in plan.changes()}
    users: dict[str, set[str]] = {}
    for b, rec in state.resources.items():
        # a record uses what it was made from, and what its unfinished run (pending, or
        # tainted: it never completed) was started with
        pending = rec.pending.dependencies if rec.pending is not None else []
        for dep in (*rec.dependencies, *pending):
            users.setdefault(dep, set()).add(b)
    for b, c in nodes.items():
        if c.action is Action.DELETE:
            for dep in c.depends_on:
                users.setdefault(dep, set()).add(b)
    waits: dict[str, set[str]] = {}
    for a, c in nodes.items():
        if c.action is Action.DELETE:
            waits[a] = {b for b in users.get(a, ()) if b in nodes and b != a}
        else:
            waits[a] = {d for d in c.inputs.values() if d in nodes}
    return waits


Stop = StateConflict | LockLost | StateUnwritable  # what stops a walk (``Walker.halt``)


def _stopped(exc: Stop) -> Failure:
    """What the user is told when a walk stops for ``exc``."""
    after = (
        "so the apply stopped: nothing new was started, and work still running was detached "
        "(a later apply adopts what was recorded as started)."
    )
    if isinstance(exc, StateUnwritable):
        d = exc.diagnostics[0]
        return Failure(d.summary, f"{d.detail}\n\nThe state could not be written, {after}")
    if isinstance(exc, LockLost):
        return Failure(f"lock lost: {exc}", f"Another process may change the state now, {after}")
    return Failure(
        f"state write conflict: {exc}",
        f"The state was changed by another process while this apply ran, {after} Run plan "
        "again to see what is left to do.",
    )


def _keyed(plan: Plan, state: StateFile, secrets: Mapping[str, Mapping[str, Any]]) -> Plan:
    """``plan`` with its digests under the state's salt: a plan made before the state had one,
    that applies a sensitive param, gets the salt made now and its digests computed again
    under it (``digest.rekeyed``), so no record holds a digest that does not stand for the
    secret. Otherwise ``plan`` as it is."""
    recorded = (c for c in plan.resource_changes if c.action not in (Action.READ, Action.DELETE))
    if state.salt is not None or plan.mode is not Mode.NORMAL:
        return plan
    if not any(c.address in secrets for c in recorded):
        return plan
    digests = rekeyed(plan.resource_changes, secrets, state.ensure_salt())
    changes = [
        dataclasses.replace(c, digest_after=digests[c.address]) if c.digest_after else c
        for c in plan.resource_changes
    ]
    return dataclasses.replace(plan, resource_changes=changes)


class Walker:
    def __init__(
        self,
        plan: Plan,
        state: StateFile,
        token: str | None,
        backend: Backend,
        runtime: Runtime,
        *,
        parallelism: int = 10,
        on_event: Callable[[Event], None] = lambda _e: None,
        config_dir: str = ".",
        timeout: float | None = None,
        secrets: Mapping[str, Mapping[str, Any]] | None = None,
        graph: Mapping[str, set[str]] | None = None,
        lock: LockWatch | None = None,
    ) -> None:
        self.secrets = secrets or {}  # address -> sensitive param path -> value (engine.sensitive)
        self.plan, self.state, self.token = _keyed(plan, state, self.secrets), state, token
        self.backend, self.runtime = backend, runtime
        self.parallelism = max(1, parallelism)
        self.on_event = on_event
        self.config_dir = config_dir
        self.timeout = timeout
        self.graph = graph if graph is not None else apply_graph(plan, state)
        self.lock = lock
        self.cancelled = threading.Event()
        self._lock = threading.Lock()  # guards ``state`` and the staged changes
        self._writing = threading.Lock()  # held by the one thread writing the state
        self._dirty: dict[str, None] = {}  # addresses changed since the last write, staged
        self._staged = 0  # tickets handed out by ``_stage``
        self._written = 0  # the last ticket a write (done or failed) took
        self._failed: list[tuple[int, int, Stop]] = []  # tickets of failed writes, and why
        self._ran: set[str] = set()  # the runtime did its work (recorded or not)
        self._blocked: dict[str, str] = {}  # skipped node -> the failed upstream that blocks it
        self.result = ApplyResult()
        self._digests = {
            c.address: c.digest_after or c.digest_before or "" for c in plan.resource_changes
        }
        self._reads = {
            c.address: dict(c.outputs or {})
            for c in plan.resource_changes
            if c.action is Action.READ
        }

    @property
    def owner(self) -> Owner:
        return Owner(self.state.lineage, self.plan.workspace)

    # -- persistence ---------------------------------------------------------------------------
    def _stage(self, changed: list[str]) -> int:
        """Note that the records of ``changed`` were changed (caller holds ``self._lock``, in
        the same hold as the change); the ticket to pass to ``_persist``."""
        self._dirty.update(dict.fromkeys(changed))
        self._staged += 1
        return self._staged

    def _persist(self, ticket: int) -> None:
        """Return once a write holding the change staged as ``ticket`` is durable (caller does
        not hold ``self._lock``); raise what stopped that write. Group commit: one write at a
        time, each taking every change staged before it started, so changes staged while a
        write is under way share the next one."""
        with self._writing:
            if self._written < ticket:
                self._write_staged()
            for first, last, exc in self._failed:
                if first <= ticket <= last:
                    raise exc

    def _write_staged(self) -> None:
        """Write the state with every change staged so far (caller holds ``self._writing``).
        What is written is a shallow copy taken under ``self._lock``: records are never changed
        in place (``StateFile`` transitions replace them), so other runs go on meanwhile."""
        with self._lock:
            changed, self._dirty = list(self._dirty), {}
            first, last = self._written + 1, self._staged
            self.state.serial += 1
            snapshot = self.state.model_copy(update={"resources": dict(self.state.resources)})
        try:
            self.token = self.backend.write(snapshot, self.token, changed)
        except DiagnosticError as exc:  # a full disk, a read-only file system: stop the walk
            self._failed.append((first, last, StateUnwritable(exc)))
        except StateConflict as exc:
            self._failed.append((first, last, exc))
        self._written = last

    def cancel(self) -> None:
        self.cancelled.set()

    def halt(self, exc: Stop) -> None:
        """Stop the walk for a state write conflict, a state that cannot be written or a lost
        lock: nothing new starts, running work is detached (as on ``cancel``). The first reason
        is the one reported."""
        with self._lock:
            if self.result.stopped is None:
                self.result.stopped = _stopped(exc)
        self.cancelled.set()

    # -- scheduling ----------------------------------------------------------------------------
    def run(self) -> ApplyResult:
        if self.plan.mode is Mode.REFRESH_ONLY:
            self._apply_refresh_only()
            return self.result
        nodes = {c.address: c for c in self.plan.changes()}
        if self.plan.runs():  # best effort: a store that refuses now is written after the apply
            with contextlib.suppress(Failure):
                self.runtime.hold(self.owner, self._held(planned=True))
        if self.lock is not None:
            self.lock.on_lost(self.halt)
        self._walk(nodes)
        if self.cancelled.is_set():
            stopped = self.result.stopped
            self.result.interrupted = stopped is None
            why = f"apply was stopped: {stopped.summary}" if stopped else "apply was interrupted"
            handled = set(self.result.done) | set(self.result.failed) | set(self.result.detached)
            for a in nodes:
                if a not in handled:
                    self.result.skipped.setdefault(a, why)
        elif self.result.ok:
            self._collect_garbage()
        return self.result

    def _walk(self, nodes: Mapping[str, ResourceChange]) -> None:
        """Run ``nodes`` in the order of ``self.graph``, at most ``parallelism`` at once, ready
        ones in address order; on cancel, start nothing more and wait for what runs."""
        sorter = TopologicalSorter({a: set(self.graph.get(a, ())) & nodes.keys() for a in nodes})
        sorter.prepare()
        ready: list[str] = []
        running: dict[Future[None], str] = {}
        finished: queue.SimpleQueue[Future[None]] = queue.SimpleQueue()  # woken per node end
        with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
            try:
                while True:
                    for a in sorter.get_ready():
                        heapq.heappush(ready, a)
                    if ready and len(running) < self.parallelism and not self.cancelled.is_set():
                        a = heapq.heappop(ready)
                        if upstream := self._upstream_failure(a):
                            self._skip(nodes[a], upstream)
                            sorter.done(a)
                        else:
                            fut = pool.submit(self._run_node, nodes[a])
                            running[fut] = a
                            fut.add_done_callback(finished.put)
                        continue
                    if not running:
                        break
                    with contextlib.suppress(queue.Empty):  # the timeout: Ctrl-C is seen
                        fut = finished.get(timeout=0.2)
                        a = running.pop(fut)
                        fut.result()
                        sorter.done(a)
            except KeyboardInterrupt:
                self.cancel()
                for fut in list(running):
                    with contextlib.suppress(KeyboardInterrupt):
                        fut.result()

    def _upstream_failure(self, address: str) -> str:
        """The failed (or detached) upstream that blocks ``address``, "" when none does."""
        for up in sorted(self.graph.get(address, ())):
            if up in self._blocked:
                return self._blocked[up]
            if up in self.result.failed or up in self.result.detached:
                return up
        return ""

    def _held(self, planned: bool = False) -> list[Held]:
        """Versions of resources outside this state that its records use (external inputs);
        ``planned``: also those the plan's reads will feed into what it runs."""
        default_ns = self.plan.settings.namespace or "default"
        held: set[Held] = set()
        if planned:
            for c in self.plan.resource_changes:
                if c.action is Action.READ and c.digest_after:
                    held.add(Held(c.kind, c.namespace, c.name, c.digest_after))
        for rec in self.state.resources.values():
            for dep in rec.dependencies:
                version = rec.dependency_digests.get(dep)
                if dep in self.state.resources or not version:
                    continue
                with contextlib.suppress(ValueError):
                    addr = Address.parse(dep)
                    ns = addr.namespace or default_ns
                    held.add(Held(addr.kind, ns, addr.name, version))
        return sorted(held, key=str)

    def _collect_garbage(self) -> None:
        garbage = [
            Garbage(address, rec.kind, rec.namespace, rec.name, version)
            for address, rec in sorted(self.state.resources.items())
            for version in rec.garbage()
        ]
        try:
            self.runtime.hold(self.owner, self._held())
        except Failure:
            return  # without our holds recorded, remove nothing: a later apply collects it
        removed = self.runtime.collect_garbage(self.owner, garbage)
        with self._lock:
            changed = self.state.drop_versions(removed)
            ticket = self._stage(changed) if changed else 0
        if ticket:
            self._persist(ticket)

    def _skip(self, change: ResourceChange, upstream: str) -> None:
        msg = f"not applied: upstream {upstream} failed"
        self._blocked[change.address] = upstream
        self.result.skipped[change.address] = msg
        self.on_event(Event(EventKind.SKIPPED, change.address, change.action, msg))

    # -- one node ------------------------------------------------------------------------------
    def _inputs(self, change: ResourceChange) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for role, addr in change.inputs.items():
                if addr in self._reads:
                    out[role] = self._reads[addr]
                elif addr in self.state.resources:
                    out[role] = dict(self.state.resources[addr].outputs)
        return out

    def _run_node(self, change: ResourceChange) -> None:
        start = time.monotonic()
        started_at = now_iso()

        attempts = Attempts()

        def event(
            kind: EventKind, message: str = "", detail: str = "", tried: FailedAttempt | None = None
        ) -> None:
            elapsed = time.monotonic() - start if kind is not EventKind.START else 0.0
            said = said_once(message, change.address)
            self.on_event(Event(kind, change.address, change.action, said, elapsed, detail, tried))

        def restart(tried: FailedAttempt) -> None:
            if attempts.add(tried) and not tried.final:
                event(EventKind.RESTART, tried.message(), tried=tried)

        event(EventKind.START)
        ctx = RunContext(
            phase=lambda msg: event(EventKind.PHASE, msg),
            notice=lambda msg: event(EventKind.NOTICE, msg),
            cancelled=self.cancelled,
            timeout=self.timeout,
            restart=restart,
        )
        try:
            if change.action is Action.DELETE:
                self._delete(change, ctx)
            elif change.record_only:
                self._record_only(change)
            else:
                self._create(change, ctx, started_at, attempts)
        except Detached as exc:
            self.result.detached.append(change.address)
            event(EventKind.DETACHED, str(exc) or "still running; the next apply adopts it")
            return
        except Failure as exc:
            self.result.failed[change.address] = exc
            # Said before it is recorded: when the state cannot be written either (a full disk),
            # the reason the resource failed is not lost with that error.
            event(EventKind.FAILED, exc.summary, exc.detail)
            self._record_failure(change, started_at, time.monotonic() - start, attempts)
            return
        except (StateConflict, LockLost, StateUnwritable) as exc:
            self.halt(exc)
            if change.address in self._ran:  # done, but not recorded: the next apply adopts it
                self.result.detached.append(change.address)
                event(EventKind.DETACHED, "finished, but the state could not record it")
            return
        except Exception as exc:  # unexpected: contain it to this node
            err = Failure(f"unexpected error: {type(exc).__name__}: {exc}")
            self.result.failed[change.address] = err
            event(EventKind.FAILED, err.summary)
            return
        self.result.done.append(change.address)
        event(EventKind.DONE)

    def _create(
        self, change: ResourceChange, ctx: RunContext, started_at: str, attempts: Attempts
    ) -> None:
        digest = change.digest_after or ""
        with self._lock:
            rec = self.state.resources.get(change.address)
            pending = rec.pending if rec is not None else None
            adopting = pending is not None and pending.digest == digest
            adopt = pending.intent if pending is not None and adopting else None
            version = (
                pending.run_version if pending is not None and adopting else new_version(digest)
            )
        request = RunRequest(
            address=change.address,
            kind=change.kind,
            namespace=change.namespace,
            name=change.name,
            digest=digest,
            spec=reveal(change.after or {}, self.secrets.get(change.address)),
            inputs=self._inputs(change),
            action=change.action,
            prior_outputs=dict(rec.outputs) if rec is not None and rec.digest else None,
            intent=adopt,
            config_dir=self.config_dir,
            version=version,
            owner=self.owner,
            sensitive=frozenset(self.secrets.get(change.address) or ()),
        )
        intent = dict(adopt) if adopt is not None else self.runtime.intent(request)
        pending_op = PendingOperation(
            action=change.action.value,
            digest=digest,
            spec=change.after or {},
            dependencies=change.depends_on,
            started_at=started_at,
            intent=intent,
            version=version,
        )
        with self._lock:
            self.state.begin(change.address, change.kind, change.namespace, change.name, pending_op)
            ticket = self._stage([change.address])
        self._persist(ticket)
        outputs = self.runtime.apply(request, ctx)
        self._ran.add(change.address)
        with self._lock:
            rec = self.state.resources[change.address]
            completed = self._completed(change, rec, version, dict(outputs), started_at, attempts)
            self.state.complete(change.address, completed)
            ticket = self._stage([change.address])
        self._persist(ticket)

    def _completed(
        self,
        change: ResourceChange,
        rec: ResourceRecord,
        version: str,
        outputs: dict[str, Any],
        started_at: str,
        attempts: Attempts,
    ) -> ResourceRecord:
        """The record of a run that completed (``rec``: the record it replaces)."""
        digest = change.digest_after or ""
        previous = rec.digest if rec.digest and rec.digest != digest else rec.previous_digest
        prior_version = rec.current_version if rec.digest else rec.prior_version
        if prior_version == version:
            prior_version = rec.prior_version
        run = RunRecord(
            started_at=started_at,
            finished_at=now_iso(),
            outcome="succeeded",
            seconds=round(_seconds_since(started_at), 3),
            **_attempt_fields(attempts, succeeded=True),
        )
        return ResourceRecord(
            kind=change.kind,
            namespace=change.namespace,
            name=change.name,
            spec=self._sealed(change),
            digest=digest,
            dependencies=change.depends_on,
            dependency_digests={d: self._digests.get(d, "") for d in change.depends_on},
            outputs=outputs,
            status="ready",
            applied_at=now_iso(),
            lifecycle=change.lifecycle,
            previous_digest=previous,
            last_run=run,
            last_success=run,
            version=version,
            previous_version=prior_version,
            versions=rec.owned_versions(),
            digest_format=DIGEST_FORMAT,
        )

    def _sealed(self, change: ResourceChange) -> dict[str, Any]:
        """The spec to record: its sensitive markers fingerprinted with the state's salt (made
        now if it has none), whatever salt the plan was made with (``engine.sensitive``)."""
        values = self.secrets.get(change.address)
        spec = dict(change.after or {})
        return seal(spec, values, self.state.ensure_salt()) if values else spec

    def _record_only(self, change: ResourceChange) -> None:
        """Rewrite the record (spec, lifecycle, digest, inputs) of a resource that runs on as it
        is: the runtime is not called."""
        with self._lock:
            rec = self.state.resources.get(change.address)
            if rec is None or not rec.digest:
                raise Failure("no completed run to update the record of")
            # pin the versions first: a record without them names them by its (old) digest
            updated = rec.model_copy(
                update={
                    "version": rec.current_version or "",
                    "previous_version": rec.prior_version,
                    "versions": rec.owned_versions(),
                    "spec": self._sealed(change),
                    "lifecycle": dict(change.lifecycle),
                    "digest": change.digest_after or rec.digest,
                    "digest_format": DIGEST_FORMAT,
                    "dependencies": list(change.depends_on),
                    "dependency_digests": {d: self._digests.get(d, "") for d in change.depends_on},
                }
            )
            self.state.complete(change.address, updated)
            ticket = self._stage([change.address])
        self._persist(ticket)

    def _record_failure(
        self, change: ResourceChange, started_at: str, seconds: float, attempts: Attempts
    ) -> None:
        run = RunRecord(
            started_at=started_at,
            finished_at=now_iso(),
            outcome="failed",
            seconds=round(seconds, 3),
            **_attempt_fields(attempts, succeeded=False),
        )
        with self._lock:
            ticket = self._stage([change.address]) if self.state.fail(change.address, run) else 0
        try:
            if ticket:
                self._persist(ticket)
        except (StateConflict, LockLost, StateUnwritable) as exc:
            self.halt(exc)

    def _delete(self, change: ResourceChange, ctx: RunContext) -> None:
        with self._lock:
            rec = self.state.resources.get(change.address)
        if rec is None:
            return
        self.runtime.delete(
            DeleteRequest(
                address=change.address,
                kind=rec.kind,
                namespace=rec.namespace,
                name=rec.name,
                digest=rec.digest,
                spec=rec.spec,
                outputs=rec.outputs,
                retain_artifacts=bool(change.lifecycle.get("retainArtifacts")),
                intent=rec.pending.intent if rec.pending else None,
                versions=tuple(rec.owned_versions()),
                owner=self.owner,
            ),
            ctx,
        )
        self._ran.add(change.address)
        with self._lock:
            self.state.remove(change.address)
            ticket = self._stage([change.address])
        self._persist(ticket)

    def _apply_refresh_only(self) -> None:
        with self._lock:
            changed = []
            for d in self.plan.drift:
                if d.status is DriftStatus.MISSING and self.state.remove(d.address):
                    changed.append(d.address)
                    self.result.done.append(d.address)
            ticket = self._stage(changed) if changed else 0
        if ticket:
            self._persist(ticket)


def _attempt_fields(attempts: Attempts, succeeded: bool) -> dict[str, Any]:
    """``RunRecord``'s ``attempts`` and ``failed_attempts`` of a run: none when no attempt
    failed (one attempt, the outcome)."""
    failed = attempts.ordered()
    if not failed:
        return {}
    return {
        "attempts": attempts.count(succeeded),
        "failed_attempts": [
            AttemptRecord(attempt=a.number, reason=a.reason, counted=None if a.counted else False)
            for a in failed
        ],
    }


def _seconds_since(iso: str) -> float:
    from datetime import UTC, datetime

    then = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - then).total_seconds())
