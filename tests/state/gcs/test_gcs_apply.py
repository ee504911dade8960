"""Applies through the engine's Walker into the GCS backend: the state read back is the state
applied, and the bytes uploaded grow linearly with the number of resources (no full-state
rewrite per resource)."""

from __future__ import annotations

from pathlib import Path

from substratus.engine.backend import LockInfo
from tests.state.gcs.conftest import MakeBackend
from tests.state.gcs.helpers import apply_like
from tests.support.engine import Harness
from tests.support.gcs import GcsServer


def config(n: int) -> str:
    return "---\n".join(
        f"kind: Dataset\nname: d{i}\nspec: {{container: {{image: x}}, loader: {{params: "
        f"{{n: {i}, notes: {'x' * 200}}}}}}}\n"
        for i in range(n)
    )


def test_walker_apply(make_backend: MakeBackend, emulator: GcsServer, tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    backend = make_backend()
    harness.backend = backend  # type: ignore[assignment]
    lock_id = backend.lock(LockInfo(operation="apply"))
    result = harness.apply(harness.plan(config(12)))
    assert result.ok, result
    backend.unlock(lock_id)
    applied = harness.state()
    # at most two writes per resource (its start, its end); fewer when runs that start or end
    # while the state is being written share the next write (group commit)
    assert 1 < applied.serial <= 24 and len(applied.resources) == 12
    assert make_backend().read()[0] == applied
    assert not harness.plan().has_changes  # planned again from the state in GCS


def test_bytes_uploaded_grow_linearly(make_backend: MakeBackend, emulator: GcsServer) -> None:
    uploaded = {}
    for n, workspace in ((25, "small"), (100, "large")):
        emulator.proxy.reset_stats()
        state = apply_like(make_backend(workspace), n)
        uploaded[n] = emulator.proxy.stats()["bytes_uploaded"]
        final = len(state.to_json())
        assert uploaded[n] < 8 * final, (n, uploaded[n], final)  # not 2N states
    assert uploaded[100] / uploaded[25] < 6  # 4x the resources: ~4x (quadratic would be ~16x)
