"""Group commit: runs that end while the state is being written share the next write, and every
guarantee of a write per change still holds — a run's intent is stored before it starts, its
record before anything that depends on it starts."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from substratus.engine.apply import Walker
from substratus.engine.runtime import RunContext, RunRequest
from substratus.engine.statefile import StateFile
from tests.support.engine import Harness
from tests.support.fakes import FakeRuntime, MemoryBackend
from tests.support.waiting import wait_for

DATASETS = [f"dataset.data-{i}" for i in range(6)]
INPUTS = {"model.trained": ["dataset.data-0"]}  # what each run takes its inputs from
CONFIG = "\n---\n".join(
    [
        *(
            f"kind: Dataset\nname: data-{i}\n"
            "spec: {container: {image: substratusai/dataset-loader-http}}"
            for i in range(len(DATASETS))
        ),
        "kind: Model\nname: trained\n"
        "spec: {container: {image: substratusai/model-trainer-huggingface}, "
        "trainer: {dataset: data-0}}",
    ]
)


def stored(backend: MemoryBackend) -> StateFile:
    assert backend.text is not None
    return StateFile.from_json(backend.text)


class Together(FakeRuntime):
    """The datasets' runs end together (a barrier); each run checks what is stored when it
    starts: its own intent, and the completed record of every input."""

    def __init__(self, backend: MemoryBackend) -> None:
        super().__init__()
        self.backend = backend
        self.barrier = threading.Barrier(len(DATASETS), timeout=60)
        self.seen: dict[str, tuple[bool, bool]] = {}  # address -> (intent stored, inputs stored)

    def apply(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        state = stored(self.backend)
        mine = state.resources.get(request.address)
        inputs = [state.resources.get(a) for a in INPUTS.get(request.address, [])]
        self.seen[request.address] = (
            mine is not None and mine.pending is not None,
            all(r is not None and r.digest and r.pending is None for r in inputs),
        )
        outputs = super().apply(request, ctx)
        if request.address in DATASETS:
            self.barrier.wait()
        return outputs


class Gated(MemoryBackend):
    """Holds the first write of a completed run until every dataset's completion is in the
    walker's state (staged meanwhile, while that write is under way); records what each write
    held."""

    def __init__(self) -> None:
        super().__init__()
        self.walker: Walker | None = None
        self.completions: list[list[str]] = []  # per write: the completed runs it recorded
        self.gated = False

    def write(self, state: StateFile, expected_token: str | None, changed: list[str]) -> str:
        done = [a for a in changed if a in state.resources and state.resources[a].digest]
        if done:
            self.completions.append(done)
        if done and not self.gated and self.walker is not None:
            self.gated = True
            walker = self.walker
            wait_for(
                lambda: all(walker.state.resources[a].digest for a in DATASETS),
                "every dataset's completion to be staged",
            )
        return super().write(state, expected_token, changed)


def test_runs_that_end_together_share_a_state_write(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    backend = Gated()
    h.backend = backend
    runtime = Together(backend)
    h.runtime = runtime
    plan = h.plan(CONFIG)
    walker = Walker(
        plan, StateFile.new(), None, backend, runtime, parallelism=len(DATASETS), config_dir="."
    )
    backend.walker = walker
    assert walker.run().ok
    # the gated write took what was staged before it; the next one took all the others
    recorded = [a for batch in backend.completions for a in batch]
    assert sorted(recorded) == sorted([*DATASETS, "model.trained"])
    assert len(backend.completions) <= 3, backend.completions
    assert max(len(batch) for batch in backend.completions) >= 2, backend.completions
    assert backend.writes < 2 * (len(DATASETS) + 1)
    # nothing was given up for it: every intent was stored before its run started, and the
    # model's dataset was recorded complete before the model started
    assert runtime.seen == {a: (True, True) for a in [*DATASETS, "model.trained"]}
    final = stored(backend)
    assert all(final.resources[a].digest and final.resources[a].pending is None for a in DATASETS)
    assert final.serial == walker.state.serial == backend.writes
