"""Drive the engine end to end in memory: config text → plan → apply, for unit/property tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from substratus.engine.apply import ApplyResult, Walker
from substratus.engine.config import load_config
from substratus.engine.operation import PlanOptions, build_plan
from substratus.engine.plan import Plan
from substratus.engine.statefile import RunRecord, StateFile
from tests.support.fakes import FakeRuntime, MemoryBackend


class Harness:
    """One configuration directory and its state; ``runtime`` may be shared with other
    harnesses (a shared artifact store). ``plan(paths=...)`` plans ``-f`` paths (relative to
    ``root``) in that order; by default the whole directory."""

    def __init__(self, root: Path, runtime: FakeRuntime | None = None) -> None:
        self.root = root
        self.runtime = runtime or FakeRuntime()
        self.backend = MemoryBackend()
        self.secrets: dict[str, dict[str, Any]] = {}  # of the last plan's configuration

    def write(self, text: str, name: str = "substratus.yaml") -> Path:
        path = self.root / name
        path.write_text(text, encoding="utf-8")
        return path

    def plan(
        self, text: str | None = None, *, paths: list[str] | None = None, **options: Any
    ) -> Plan:
        if text is not None:
            self.write(text)
        cfg = load_config([str(self.root / p) for p in paths] if paths else [str(self.root)])
        state, _ = self.backend.read()
        # as the CLI does: the apply has the values of the sensitive params (engine.sensitive)
        self.secrets = {str(a): r.secrets for a, r in cfg.resources.items() if r.secrets}
        return build_plan(cfg, state, self.runtime, PlanOptions(**options))

    def apply(self, plan: Plan) -> ApplyResult:
        state, token = self.backend.read()
        walker = Walker(
            plan,
            state or StateFile.new(),
            token,
            self.backend,
            self.runtime,
            parallelism=4,
            config_dir=str(self.root),
            secrets=self.secrets,
        )
        return walker.run()

    def record_durations(
        self,
        seconds: Mapping[str, float],
        default: float | None = None,
        failed: frozenset[str] = frozenset(),
    ) -> None:
        """Make the recorded ``last_run`` of each resource deterministic: ``seconds[address]``
        (else ``default``; else no run recorded), outcome failed for the ``failed`` addresses
        (which then have no successful run on record either); ``last_success`` follows."""
        state, token = self.backend.read()
        assert state is not None
        for address, rec in state.resources.items():
            value = seconds.get(address, default)
            rec.last_run = (
                None
                if value is None
                else RunRecord(
                    started_at="2026-11-28T10:00:00Z",
                    finished_at="2026-11-28T10:00:00Z",
                    outcome="failed" if address in failed else "succeeded",
                    seconds=value,
                )
            )
            succeeded = rec.last_run is not None and rec.last_run.outcome == "succeeded"
            rec.last_success = rec.last_run if succeeded else None
        self.backend.write(state, token, [])  # the serial unchanged: as the apply left it

    def state(self) -> StateFile:
        state, _ = self.backend.read()
        assert state is not None
        return state
