"""The walker stops on a state write conflict or a lost lock: nothing new starts, the reason is
reported as such (never "unexpected error"), and the transitions go through the ``StateFile``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from substratus.engine.apply import ApplyResult, EventKind, Walker, apply_graph
from substratus.engine.backend import LockLost, LockWatch
from substratus.engine.runtime import RunContext, RunRequest
from substratus.engine.statefile import StateFile
from tests.support.engine import Harness
from tests.support.fakes import FakeRuntime

CONFIG = """\
kind: Dataset
name: data
spec: {container: {image: substratusai/dataset-loader-http}}
---
kind: Model
name: trained
spec:
  container: {image: substratusai/model-trainer-huggingface}
  trainer: {dataset: data}
---
kind: Model
name: other
spec:
  container: {image: substratusai/model-trainer-huggingface}
  trainer: {dataset: data}
"""


class Interfering(FakeRuntime):
    """Calls ``during(address)`` while the run of that address is under way."""

    def __init__(self, during: Callable[[str], None]) -> None:
        super().__init__()
        self.during = during

    def apply(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]:
        self.during(request.address)
        return super().apply(request, ctx)


def walk(h: Harness, lock: LockWatch | None = None) -> tuple[ApplyResult, list[Any]]:
    plan = h.plan(CONFIG)
    state, token = h.backend.read()
    events: list[Any] = []
    walker = Walker(
        plan,
        state or StateFile.new(),
        token,
        h.backend,
        h.runtime,
        parallelism=1,
        on_event=events.append,
        config_dir=str(h.root),
        lock=lock,
    )
    return walker.run(), events


def test_a_state_write_conflict_stops_the_walk(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    def bump(address: str) -> None:  # another process writes the state meanwhile
        if address == "dataset.data":
            state, token = h.backend.read()
            assert state is not None
            state.serial += 1
            h.backend.write(state, token, [])

    h.runtime = Interfering(bump)
    result, events = walk(h)
    assert [a for _, a in h.runtime.calls] == ["dataset.data"]  # nothing started after it
    assert result.stopped is not None and not result.ok and not result.interrupted
    assert result.stopped.summary == "state write conflict: state changed since it was read"
    assert "changed by another process" in result.stopped.detail
    assert result.detached == ["dataset.data"]  # finished, not recorded: the next apply adopts
    assert set(result.skipped) == {"model.trained", "model.other"}
    assert not result.failed
    assert all(e.kind is not EventKind.FAILED for e in events)
    pending = h.state().resources["dataset.data"].pending
    assert pending is not None and pending.intent  # its intent was recorded before it ran


def test_a_lost_lock_stops_the_walk(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    watch = LockWatch()

    def lose(address: str) -> None:
        if address == "dataset.data":
            watch.lose(LockLost("the lock 1 is now 2"))

    h.runtime = Interfering(lose)
    result, _ = walk(h, watch)
    assert [a for _, a in h.runtime.calls] == ["dataset.data"]
    assert result.stopped is not None and result.stopped.summary == "lock lost: the lock 1 is now 2"
    assert result.done == ["dataset.data"]  # its write is still compare-and-swap: recorded
    assert set(result.skipped) == {"model.trained", "model.other"}
    assert h.state().resources["dataset.data"].digest


def test_the_walker_schedules_on_the_graph_it_is_given(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    plan = h.plan(CONFIG)
    graph = apply_graph(plan, StateFile.new())
    assert graph == {
        "dataset.data": set(),
        "model.trained": {"dataset.data"},
        "model.other": {"dataset.data"},
    }
    graph["model.trained"] |= {"model.other"}  # an edge the plan does not have: it is obeyed
    walker = Walker(plan, StateFile.new(), None, h.backend, h.runtime, parallelism=4, graph=graph)
    assert walker.run().ok
    assert [a for _, a in h.runtime.calls] == ["dataset.data", "model.other", "model.trained"]


def test_nothing_is_deleted_before_a_tainted_resource_whose_run_used_it(tmp_path: Path) -> None:
    """A run that never completed leaves a tainted record whose only dependencies are those its
    run was started with: removing both, the dataset waits for the tainted model's delete (the
    property test once saw a build deleted before its failed dataset)."""
    h = Harness(tmp_path)
    h.runtime.fail.add("model.trained")
    assert not h.apply(h.plan(CONFIG)).ok
    tainted = h.state().resources["model.trained"]
    assert tainted.status == "tainted" and not tainted.dependencies
    plan = h.plan("")  # everything removed from the configuration
    assert apply_graph(plan, h.state())["dataset.data"] >= {"model.trained"}
    assert h.apply(plan).ok
    deletes = [a for action, a in h.runtime.calls if action == "delete"]
    assert deletes.index("model.trained") < deletes.index("dataset.data"), deletes
