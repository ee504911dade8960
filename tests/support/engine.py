"""Drive the engine end to end in memory: config text → plan → apply, for unit/property tests."""

from __future__ import annotations

from pathlib import Path

from substratus.engine.apply import ApplyResult, Walker
from substratus.engine.config import load_config
from substratus.engine.operation import PlanOptions, build_plan
from substratus.engine.plan import Plan
from substratus.engine.statefile import StateFile
from tests.support.fakes import FakeRuntime, MemoryBackend


class Harness:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.runtime = FakeRuntime()
        self.backend = MemoryBackend()

    def write(self, text: str, name: str = "substratus.yaml") -> Path:
        path = self.root / name
        path.write_text(text, encoding="utf-8")
        return path

    def plan(self, text: str | None = None, **options: object) -> Plan:
        if text is not None:
            self.write(text)
        cfg = load_config([str(self.root)])
        state, _ = self.backend.read()
        return build_plan(cfg, state, self.runtime, PlanOptions(**options))  # type: ignore[arg-type]

    def apply(self, plan: Plan) -> ApplyResult:
        state, token = self.backend.read()
        walker = Walker(
            plan, state or StateFile.new(), token, self.backend, self.runtime, parallelism=4
        )
        return walker.run()

    def state(self) -> StateFile:
        state, _ = self.backend.read()
        assert state is not None
        return state
