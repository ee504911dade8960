"""Bytes and writes the local state backend makes while one apply of N resources runs.

For each N it generates a configuration of N resources (``plan_scale.generate``; fan-out shape by
default), plans it (everything is created) and applies the plan with ``engine.apply.Walker``
through ``tests.support.fakes.FakeRuntime`` (nothing runs) into the real file backend,
``open_backend("file://<tmp>", "default", tmp)``. The backend is wrapped so that every ``write``
is counted: the bytes of the state file it left (``FileBackend`` rewrites the whole file, so that
is what one write costs), plus the one-off ``default.json.backup``, and the time spent in
``write`` (serialisation, compare-and-swap, atomic write with fsyncs).

The Walker persists twice per resource (the pending intent before the work, the record after),
so there are about 2N writes of a state that grows to N records: total bytes grow as O(N²).
``growth`` is bytes(N) / bytes(previous N); with N growing 10× it is ~100× when quadratic.
That is expected of the local backend (DESIGN §7: whole-file rewrite for a consistent snapshot);
a journaling backend (GCS) would write O(N) bytes.

Run from the repository root::

    python bench/state_writes.py                    # N = 10, 100, 1000
    python bench/state_writes.py --sizes 10,100,1000,3000 --shape chain
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from substratus.engine.apply import Walker
from substratus.engine.config import load_config
from substratus.engine.operation import PlanOptions, build_plan
from substratus.engine.statefile import StateFile
from substratus.state import open_backend

BENCH = Path(__file__).resolve().parent
SHAPES = ("chain", "fanout")


def _helpers() -> tuple[Any, Any]:
    """``plan_scale.generate`` (sibling script) and ``tests.support.fakes.FakeRuntime``."""
    for path in (BENCH, BENCH.parent):  # appended, so PYTHONPATH can override substratus
        if str(path) not in sys.path:
            sys.path.append(str(path))
    from plan_scale import generate

    from tests.support.fakes import FakeRuntime

    return generate, FakeRuntime


class CountingBackend:
    """Delegates to a ``FileBackend`` and records the bytes and duration of every ``write``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sizes: list[int] = []
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def write(self, state: StateFile, expected_token: str | None, changed: list[str]) -> str:
        start = time.perf_counter()
        token: str = self.inner.write(state, expected_token, changed)
        self.seconds += time.perf_counter() - start
        self.sizes.append(self.inner.state_path.stat().st_size)
        return token

    @property
    def backup_bytes(self) -> int:
        path: Path = self.inner.backup_path
        return path.stat().st_size if path.exists() else 0


def run_one(n: int, shape: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"substratus-state-{n}-"))
    try:
        directory = tmp / "config"
        generate, fake_runtime = _helpers()
        generate(directory, n, shape)
        config = load_config([str(directory)])
        runtime = fake_runtime()
        plan = build_plan(config, None, runtime, PlanOptions(refresh=False))
        backend = CountingBackend(open_backend(f"file://{tmp / 'state'}", "default", tmp))
        start = time.perf_counter()
        result = Walker(plan, StateFile(), None, backend, runtime, config_dir=str(directory)).run()
        elapsed = time.perf_counter() - start
        if not result.ok:
            raise SystemExit(f"apply through the fakes failed: {result}")
        return {
            "n": n,
            "records": len(plan.resource_changes),
            "writes": len(backend.sizes),
            "bytes": sum(backend.sizes) + backend.backup_bytes,
            "final": backend.sizes[-1],
            "write_s": backend.seconds,
            "apply_s": elapsed,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_table(rows: list[dict[str, Any]], shape: str) -> None:
    print(f"State writes during one apply ({shape}; real FileBackend, FakeRuntime, Walker):")
    head = (
        f"{'N':>6} {'records':>7} {'writes':>7} {'bytes total':>15} {'bytes/resource':>14} "
        f"{'final state':>12} {'growth':>9} {'N ratio':>7} {'write s':>8} {'ms/write':>8} "
        f"{'apply s':>8}"
    )
    print(head)
    print("-" * len(head))
    prev: dict[str, Any] | None = None
    for r in rows:
        growth = f"{r['bytes'] / prev['bytes']:.1f}x" if prev else "-"
        ratio = f"{r['n'] / prev['n']:.0f}x" if prev else "-"
        print(
            f"{r['n']:>6} {r['records']:>7} {r['writes']:>7} {r['bytes']:>15,} "
            f"{r['bytes'] / r['n']:>14,.0f} {r['final']:>12,} {growth:>9} {ratio:>7} "
            f"{r['write_s']:>8.2f} {1000 * r['write_s'] / r['writes']:>8.2f} {r['apply_s']:>8.2f}"
        )
        prev = r
    if len(rows) >= 2:
        last = rows[-1]
        per_record = last["final"] / last["records"]
        n = 10_000
        projected = per_record * (n + 1) * (n + 2)  # 2 writes per record, sizes 1..N records
        print(
            f"\nextrapolated for N={n:,} (2 writes per resource, {per_record:,.0f} bytes per "
            f"record): ~{projected / 1e9:.1f} GB written in one apply"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000", help="comma-separated N")
    parser.add_argument("--shape", default="fanout", choices=SHAPES)
    args = parser.parse_args(argv)
    rows = []
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        print(f"… N={n}", file=sys.stderr, flush=True)
        rows.append(run_one(n, args.shape))
    print_table(rows, args.shape)


if __name__ == "__main__":
    main()
