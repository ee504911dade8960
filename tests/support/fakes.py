"""In-memory stand-ins for the two engine protocols, for unit and property tests of the engine.

``FakeRuntime`` records what it was asked to do and can be told that a resource went missing or
fails; ``MemoryBackend`` keeps the state and the lock in memory with the same compare-and-swap
contract as the real backends. Integration tests use the real local runtime and file backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from substratus.engine.backend import LockHeld, LockInfo, LockNotFound, StateConflict
from substratus.engine.diagnostic import Diagnostic
from substratus.engine.failure import Failure
from substratus.engine.kinds import version_key as key
from substratus.engine.runtime import (
    DeleteRequest,
    ExternalResource,
    Garbage,
    Held,
    Observation,
    Owner,
    ResourceView,
    RunContext,
    RunRequest,
)
from substratus.engine.statefile import ResourceRecord, StateFile
from substratus.runtimes.holds import held_key


class FakeRuntime:
    """A runtime in memory. ``live`` maps (state lineage, address) to the version that runs;
    ``store`` is a shared artifact store: the versions (``kinds.version_key``) every run made and no
    delete or garbage collection removed; ``holds`` what each state holds of others'. Several
    harnesses (states) may share one instance, as configurations share a store."""

    name = "fake"

    def __init__(self) -> None:
        self.live: dict[tuple[str | None, str], str] = {}
        self.missing: set[str] = set()
        self.fail: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self.externals: dict[tuple[str, str, str], ExternalResource] = {}
        self.store: set[str] = set()
        self.holds: dict[str | None, set[str]] = {}
        self.collected: list[tuple[str, str]] = []

    def check(self, resources: Sequence[ResourceView]) -> list[Diagnostic]:
        return []

    def refresh(
        self, records: Mapping[str, ResourceRecord], owner: Owner = Owner()
    ) -> dict[str, Observation]:
        out = {}
        for addr, rec in records.items():
            running = self.live.get((owner.lineage, addr))
            if addr in self.missing or (rec.digest and running != rec.current_version):
                out[addr] = Observation("missing", f"{addr} is gone")
            else:
                out[addr] = Observation("present")
        return out

    def read_external(self, kind: str, namespace: str, name: str) -> ExternalResource | None:
        return self.externals.get((kind, namespace, name))

    def intent(self, request: RunRequest) -> dict[str, Any]:
        return {"name": f"{request.name}-{request.run_version}"}

    def apply(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        self.calls.append((request.action, request.address))
        if request.address in self.fail:
            raise Failure(f"{request.address} failed", "log tail")
        self.live[(request.owner.lineage, request.address)] = request.run_version
        self.missing.discard(request.address)
        self.store.add(key(request.namespace, request.kind, request.name, request.run_version))
        return {
            "artifacts": f"mem://{request.address}/{request.run_version}",
            "inputs": {k: v.get("artifacts") for k, v in sorted(request.inputs.items())},
        }

    def _held_by_others(self, owner: Owner) -> set[str]:
        return {v for lineage, held in self.holds.items() if lineage != owner.lineage for v in held}

    def delete(self, request: DeleteRequest, ctx: RunContext) -> None:
        self.calls.append(("delete", request.address))
        self.live.pop((request.owner.lineage, request.address), None)
        if not request.retain_artifacts:
            held = self._held_by_others(request.owner)
            for v in request.versions:
                k = key(request.namespace, request.kind, request.name, v)
                if k not in held:
                    self.store.discard(k)

    def hold(self, owner: Owner, held: Sequence[Held]) -> None:
        self.holds[owner.lineage] = {held_key(h) for h in held}

    def collect_garbage(self, owner: Owner, garbage: Sequence[Garbage]) -> set[tuple[str, str]]:
        held = self._held_by_others(owner)
        out = set()
        for g in garbage:
            k = key(g.namespace, g.kind, g.name, g.version)
            if k not in held:
                self.store.discard(k)
                out.add((g.address, g.version))
        self.collected.extend(sorted(out))
        return out


class MemoryBackend:
    url = "memory://"
    workspace = "default"

    def __init__(self) -> None:
        self.text: str | None = None
        self.version = 0
        self.lock_info: LockInfo | None = None
        self.writes = 0

    def read(self) -> tuple[StateFile | None, str | None]:
        if self.text is None:
            return None, None
        return StateFile.from_json(self.text), str(self.version)

    def write(self, state: StateFile, expected_token: str | None, changed: list[str]) -> str:
        current = str(self.version) if self.text is not None else None
        if current != expected_token:
            raise StateConflict("state changed since it was read")
        self.text = state.to_json()
        self.version += 1
        self.writes += 1
        return str(self.version)

    def lock(self, info: LockInfo) -> str:
        if self.lock_info is not None:
            raise LockHeld(self.lock_info)
        info.id = "lock-1"
        self.lock_info = info
        return info.id

    def unlock(self, lock_id: str) -> None:
        if self.lock_info is None or self.lock_info.id != lock_id:
            raise LockNotFound(lock_id)
        self.lock_info = None

    def current_lock(self) -> LockInfo | None:
        return self.lock_info

    def force_unlock(self, lock_id: str) -> LockInfo:
        info = self.lock_info
        self.unlock(lock_id)
        assert info is not None
        return info

    def workspaces(self) -> list[str]:
        return ["default"]
