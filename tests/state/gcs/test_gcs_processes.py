"""The GCS backend with real processes: several writers contending for one workspace, and a
writer killed with SIGKILL at random points, each time recovered by the next process."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

from substratus.engine.backend import LockInfo
from substratus.state import lock_with_timeout
from substratus.state.gcs import GcsBackend
from tests.state.gcs.conftest import MakeBackend
from tests.state.gcs.helpers import journal, worker
from tests.support.gcs import GcsServer

WORKERS = 4
ROUNDS = 4
KILLS = 8


def test_processes_take_turns_and_no_update_is_lost(
    emulator: GcsServer, state_url: str, make_backend: MakeBackend, tmp_path: Path
) -> None:
    """Half the workers wait for the lock, half fail at once and try again: exactly one holds
    it at any time (a marker file created with O_EXCL while holding it), every round's record
    is in the final state and each write got its own serial."""
    marker = tmp_path / "holder"
    procs = [
        worker(
            emulator,
            "rounds",
            state_url,
            str(n),
            str(ROUNDS),
            str(marker),
            "60s" if n % 2 else "0s",
            lease="3s",
        )
        for n in range(WORKERS)
    ]
    serials: list[int] = []
    refused = waited = 0
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{out}\n{err}"
        lines = [json.loads(line) for line in out.splitlines()]
        assert not [line for line in lines if "violation" in line]
        rounds = [line for line in lines if "round" in line]
        assert [line["round"] for line in rounds] == list(range(ROUNDS))
        mine = [line["serial"] for line in rounds]
        assert mine == sorted(mine) and len(set(mine)) == len(mine)  # increasing per worker
        serials += mine
        refused += rounds[-1]["refused"]
        waited += err.count("Acquiring state lock")
    assert refused + waited > 0  # they did contend
    assert sorted(serials) == list(range(1, WORKERS * ROUNDS + 1))  # one serial per write
    state, _ = make_backend().read()
    assert state is not None and state.serial == WORKERS * ROUNDS
    assert sorted(state.resources) == sorted(
        f"model.w{n}-{r}" for n in range(WORKERS) for r in range(ROUNDS)
    )
    assert make_backend().current_lock() is None
    assert journal(emulator, make_backend()) == []  # each holder folded before releasing


def test_killed_writers_lose_nothing_they_completed(
    emulator: GcsServer, state_url: str, make_backend: MakeBackend
) -> None:
    rng = random.Random(3)
    completed: set[str] = set()
    last_serial = 0
    for kill in range(KILLS):
        proc = worker(emulator, "writer", state_url, f"k{kill}", "40", lease="2s")
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        # the next process recovered the lock (after the lease) and the state
        assert first["start"] >= last_serial, first
        assert completed <= set(first["addresses"]), completed - set(first["addresses"])
        for _ in range(rng.randrange(0, 12)):
            line = proc.stdout.readline()
            if not line:
                break
            done = json.loads(line)
            completed.add(done["address"])
            last_serial = done["done"]
        time.sleep(rng.uniform(0, 0.03))  # somewhere inside the next write
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        for line in rest.splitlines():  # reported before it died: completed
            done = json.loads(line)
            completed.add(done["address"])
            last_serial = done["done"]
    recovering: GcsBackend = make_backend(lease_seconds=2)
    lock_id = lock_with_timeout(recovering, LockInfo(operation="apply"), 30)
    state, _ = recovering.read()
    assert state is not None and state.serial >= last_serial
    assert completed <= set(state.resources)
    recovering.unlock(lock_id)
    assert len(completed) > KILLS  # the kills did land at different points
