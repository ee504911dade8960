"""The walker: applies a ``Plan`` in dependency order (DESIGN §6).

Contracts:
- Creates/updates/replaces run after everything they take inputs from; deletes run after the
  deletes of their dependents (reverse order). At most ``parallelism`` run at once.
- Before a resource's work starts, its *intent* (the deterministic names the runtime will use)
  is persisted as a pending operation; when it completes, its record is persisted — before any
  dependent starts. A crash at any point therefore loses nothing that finished, and the next
  plan can find or adopt what was left running.
- A failure stops only the failed node's dependents (reported as skipped: upstream failed); the
  rest finishes. A failed run leaves the previous record (and version) in place; a failed first
  run leaves a ``tainted`` record without a digest that keeps the runtime's intent, so what the
  run left behind is replaced by the next apply and removed by destroy.
- ``cancel()`` (Ctrl-C) stops starting new work; running work is detached (it stays pending in
  the state and a later apply adopts it); the state is persisted.
- Every run makes a new version (``statefile.new_version``), named and added to the record's
  ``versions`` before it starts; only the pending run of an interrupted apply at the same digest
  is adopted (its version again). A record-only update (``ResourceChange.record_only``) rewrites
  the record without calling the runtime.
- After a successful apply, the versions this state created and no longer keeps are handed to
  the runtime's garbage collection (with the versions of other states it uses, so they are kept);
  what it removed is dropped from the records.
- The walker never branches on kinds or reasons: it calls the ``Runtime`` with typed requests.
"""

from __future__ import annotations

import contextlib
import heapq
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from substratus.engine.address import Address
from substratus.engine.backend import Backend
from substratus.engine.failure import Failure
from substratus.engine.plan import Action, Mode, Plan, ResourceChange
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
from substratus.engine.sensitive import reveal
from substratus.engine.statefile import (
    DIGEST_FORMAT,
    PendingOperation,
    ResourceRecord,
    RunRecord,
    StateFile,
    new_version,
    now_iso,
)


@dataclass(frozen=True)
class Event:
    kind: str  # start | phase | notice | done | failed | skipped | detached
    address: str
    action: str
    message: str = ""
    elapsed: float = 0.0
    detail: str = ""


@dataclass
class ApplyResult:
    done: list[str] = field(default_factory=list)
    failed: dict[str, Failure] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    detached: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not (self.failed or self.skipped or self.detached or self.interrupted)


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
    ) -> None:
        self.plan, self.state, self.token = plan, state, token
        self.backend, self.runtime = backend, runtime
        self.parallelism = max(1, parallelism)
        self.on_event = on_event
        self.config_dir = config_dir
        self.timeout = timeout
        self.secrets = secrets or {}  # address -> sensitive param path -> value (engine.sensitive)
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
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
    def _persist(self, changed: list[str]) -> None:
        """Write the state (caller holds ``self._lock``)."""
        self.state.serial += 1
        self.token = self.backend.write(self.state, self.token, changed)

    def cancel(self) -> None:
        self.cancelled.set()

    # -- scheduling ----------------------------------------------------------------------------
    def _waits_for(self, nodes: Mapping[str, ResourceChange]) -> dict[str, set[str]]:
        """What each node waits for. A create/update/replace waits for its inputs. A delete
        waits for every other change of a resource that depended on it in the state (a
        dependent's delete, or its switch to something else), so nothing is deleted while in
        use."""
        users: dict[str, set[str]] = {}
        for b, rec in self.state.resources.items():
            for dep in rec.dependencies:
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

    def run(self) -> ApplyResult:
        if self.plan.mode is Mode.REFRESH_ONLY:
            self._apply_refresh_only()
            return self.result
        nodes = {c.address: c for c in self.plan.changes()}
        if self.plan.runs():  # best effort: a store that refuses now is written after the apply
            with contextlib.suppress(Failure):
                self.runtime.hold(self.owner, self._held(planned=True))
        waits = self._waits_for(nodes)
        remaining = {a: len(w) for a, w in waits.items()}
        dependents: dict[str, list[str]] = {a: [] for a in nodes}
        for a, w in waits.items():
            for b in w:
                dependents[b].append(a)
        ready = [a for a in nodes if not remaining[a]]
        heapq.heapify(ready)
        blocked: dict[str, str] = {}  # node -> the failed upstream that blocks it
        running: dict[Future[None], str] = {}

        def finish(a: str) -> None:
            bad = a in self.result.failed or a in self.result.detached
            cause = blocked.get(a, a if bad else "")
            for d in dependents[a]:
                if cause:
                    blocked.setdefault(d, cause)
                remaining[d] -= 1
                if not remaining[d]:
                    heapq.heappush(ready, d)

        with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
            try:
                while ready or running:
                    while ready and len(running) < self.parallelism and not self.cancelled.is_set():
                        a = heapq.heappop(ready)
                        if a in blocked:
                            self._skip(nodes[a], blocked[a])
                            finish(a)
                        else:
                            running[pool.submit(self._run_node, nodes[a])] = a
                    if not running:
                        break
                    done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                    for fut in done:
                        a = running.pop(fut)
                        fut.result()
                        finish(a)
            except KeyboardInterrupt:
                self.cancel()
                for fut in list(running):
                    with contextlib.suppress(KeyboardInterrupt):
                        fut.result()
        if self.cancelled.is_set():
            self.result.interrupted = True
            handled = set(self.result.done) | set(self.result.failed) | set(self.result.detached)
            for a in nodes:
                if a not in handled:
                    self.result.skipped.setdefault(a, "apply was interrupted")
        elif self.result.ok:
            self._collect_garbage()
        return self.result

    def _held(self, planned: bool = False) -> list[Held]:
        """Versions of resources outside this state that its records use (external inputs);
        ``planned``: also those the plan's reads will feed into what it runs."""
        default_ns = str(self.plan.settings.get("namespace") or "default")
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
        changed = []
        with self._lock:
            for address, version in sorted(removed):
                rec = self.state.resources.get(address)
                if rec is not None and version in rec.versions:
                    rec.versions.remove(version)
                    changed.append(address)
            if changed:
                self._persist(sorted(set(changed)))

    def _skip(self, change: ResourceChange, upstream: str) -> None:
        msg = f"not applied: upstream {upstream} failed"
        self.result.skipped[change.address] = msg
        self.on_event(Event("skipped", change.address, change.action.value, msg))

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
        self.on_event(Event("start", change.address, change.action.value))
        ctx = RunContext(
            phase=lambda msg: self.on_event(
                Event("phase", change.address, change.action.value, msg, time.monotonic() - start)
            ),
            notice=lambda msg: self.on_event(
                Event("notice", change.address, change.action.value, msg, time.monotonic() - start)
            ),
            cancelled=self.cancelled,
            timeout=self.timeout,
        )
        try:
            if change.action is Action.DELETE:
                self._delete(change, ctx)
            elif change.record_only:
                self._record_only(change)
            else:
                self._create(change, ctx, started_at)
        except Detached as exc:
            self.result.detached.append(change.address)
            self.on_event(
                Event(
                    "detached",
                    change.address,
                    change.action.value,
                    str(exc) or "still running; the next apply adopts it",
                    time.monotonic() - start,
                )
            )
            return
        except Failure as exc:
            self.result.failed[change.address] = exc
            # Said before it is recorded: when the state cannot be written either (a full disk),
            # the reason the resource failed is not lost with that error.
            self.on_event(
                Event(
                    "failed",
                    change.address,
                    change.action.value,
                    exc.summary,
                    time.monotonic() - start,
                    exc.detail,
                )
            )
            self._record_failure(change, started_at, time.monotonic() - start)
            return
        except Exception as exc:  # unexpected: contain it to this node
            err = Failure(f"unexpected error: {type(exc).__name__}: {exc}")
            self.result.failed[change.address] = err
            self.on_event(
                Event(
                    "failed",
                    change.address,
                    change.action.value,
                    err.summary,
                    time.monotonic() - start,
                )
            )
            return
        self.result.done.append(change.address)
        self.on_event(
            Event("done", change.address, change.action.value, "", time.monotonic() - start)
        )

    def _create(self, change: ResourceChange, ctx: RunContext, started_at: str) -> None:
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
            action="replace"
            if change.action is Action.REPLACE
            else "update"
            if change.action is Action.UPDATE
            else "create",
            prior_outputs=dict(rec.outputs) if rec is not None and rec.digest else None,
            intent=adopt,
            config_dir=self.config_dir,
            version=version,
            owner=self.owner,
        )
        intent = dict(adopt) if adopt is not None else self.runtime.intent(request)
        with self._lock:
            rec = self.state.resources.get(change.address)
            if rec is None:
                rec = ResourceRecord(
                    kind=change.kind, namespace=change.namespace, name=change.name, status="pending"
                )
                self.state.resources[change.address] = rec
            rec.pending = PendingOperation(
                action=change.action.value,
                digest=digest,
                spec=change.after or {},
                dependencies=change.depends_on,
                started_at=started_at,
                intent=intent,
                version=version,
            )
            if version not in rec.versions:
                rec.versions.append(version)
            self._persist([change.address])
        outputs = self.runtime.apply(request, ctx)
        with self._lock:
            rec = self.state.resources[change.address]
            self.state.resources[change.address] = self._completed(
                change, rec, version, dict(outputs), started_at
            )
            self._persist([change.address])

    def _completed(
        self,
        change: ResourceChange,
        rec: ResourceRecord,
        version: str,
        outputs: dict[str, Any],
        started_at: str,
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
        )
        return ResourceRecord(
            kind=change.kind,
            namespace=change.namespace,
            name=change.name,
            spec=change.after or {},
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

    def _record_only(self, change: ResourceChange) -> None:
        """Rewrite the record (spec, lifecycle, digest, inputs) of a resource that runs on as it
        is: the runtime is not called."""
        with self._lock:
            rec = self.state.resources.get(change.address)
            if rec is None or not rec.digest:
                raise Failure(f"{change.address} has no completed run to update the record of")
            # pin the versions first: a record without them names them by its (old) digest
            rec.version, rec.previous_version = rec.current_version or "", rec.prior_version
            rec.versions = rec.owned_versions()
            rec.spec = change.after or {}
            rec.lifecycle = dict(change.lifecycle)
            rec.digest = change.digest_after or rec.digest
            rec.digest_format = DIGEST_FORMAT
            rec.dependencies = list(change.depends_on)
            rec.dependency_digests = {d: self._digests.get(d, "") for d in change.depends_on}
            self._persist([change.address])

    def _record_failure(self, change: ResourceChange, started_at: str, seconds: float) -> None:
        with self._lock:
            rec = self.state.resources.get(change.address)
            if rec is None:
                return
            rec.last_run = RunRecord(
                started_at=started_at,
                finished_at=now_iso(),
                outcome="failed",
                seconds=round(seconds, 3),
            )
            if not rec.digest:
                # Never completed, but the runtime may have left objects behind (a failed Job,
                # a Deployment that never became ready): keep a tainted record with the intent,
                # so the next apply replaces them and destroy removes them.
                rec.status = "tainted"
            else:
                rec.pending = None
            self._persist([change.address])

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
        with self._lock:
            self.state.resources.pop(change.address, None)
            self._persist([change.address])

    def _apply_refresh_only(self) -> None:
        with self._lock:
            changed = []
            for d in self.plan.drift:
                if d.status == "missing" and d.address in self.state.resources:
                    del self.state.resources[d.address]
                    changed.append(d.address)
                    self.result.done.append(d.address)
            if changed:
                self._persist(changed)


def _seconds_since(iso: str) -> float:
    from datetime import UTC, datetime

    then = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - then).total_seconds())
