"""GCS requests and bytes the GCS state backend makes while one apply of N resources runs.

For each N it generates a configuration of N resources (``plan_scale.generate``; fan-out shape by
default), plans it (everything is created) and applies the plan with ``engine.apply.Walker``
through ``tests.support.fakes.FakeRuntime`` (nothing runs) into the real GCS backend,
``GcsBackend("gs://<fresh bucket>/state")``, on fake-gcs-server behind the test suite's proxy
(``tests.support.gcs.start_gcs_server``). As the CLI does, the apply holds the state lock: the
counts include taking it, the Walker's writes (two per resource: pending, then done), and
releasing it, which first folds the journal into the base so the next reader downloads one
object.

Counted by the proxy (``proxy.stats()``), from taking the lock to releasing it: requests by HTTP
method, the bytes of every upload request body (journal entries, seals, compactions, the lock;
metadata included), and the bytes downloaded. ``compact`` counts the whole-state uploads,
``growth`` is bytes(N) / bytes(previous N) (with N growing 10x: ~10x when linear, ~100x when
quadratic) and ``x final`` is bytes uploaded / size of the final state. ``rewrite est.`` is what
a backend that uploads the whole state on every write (Terraform's remote backends when they
persist, Pulumi's DIY backends) would upload for the same writes: the sum of the state's size
at each write, estimated as writes x final size / 2.

Run from the repository root (needs the test extras: ``pip install -e '.[test]'``)::

    python bench/state_writes_gcs.py                      # N = 10, 100, 1000
    python bench/state_writes_gcs.py --sizes 10,100 --shape chain
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from substratus.engine.apply import Walker
from substratus.engine.backend import LockInfo
from substratus.engine.config import load_config
from substratus.engine.operation import PlanOptions, build_plan
from substratus.engine.statefile import StateFile
from substratus.state.gcs import GcsBackend
from substratus.state.gcs.store import StateStore

BENCH = Path(__file__).resolve().parent
SHAPES = ("chain", "fanout")
METHODS = ("POST", "GET", "PATCH", "DELETE")


def _helpers() -> tuple[Any, Any, Any]:
    """``plan_scale.generate``, ``FakeRuntime`` and ``start_gcs_server`` (test support)."""
    for path in (BENCH, BENCH.parent):  # appended, so PYTHONPATH can override substratus
        if str(path) not in sys.path:
            sys.path.append(str(path))
    from plan_scale import generate

    from tests.support.fakes import FakeRuntime
    from tests.support.gcs import start_gcs_server

    return generate, FakeRuntime, start_gcs_server


class Counting(StateStore):
    """``StateStore`` that counts its writes and its compactions (whole-state uploads)."""

    writes = 0
    compactions = 0

    def write(self, state: StateFile, expected: str | None, changed: list[str]) -> str:
        Counting.writes += 1
        return super().write(state, expected, changed)

    def _compact(self, *args: Any, **kwargs: Any) -> Any:
        Counting.compactions += 1
        return super()._compact(*args, **kwargs)


def run_one(server: Any, n: int, shape: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"substratus-gcs-{n}-"))
    try:
        directory = tmp / "config"
        generate, fake_runtime, _ = _helpers()
        generate(directory, n, shape)
        config = load_config([str(directory)])
        runtime = fake_runtime()
        plan = build_plan(config, None, runtime, PlanOptions(refresh=False))
        backend = GcsBackend(f"gs://{server.new_bucket('bench')}/state")
        backend.store = Counting(backend.bucket, backend.names)
        Counting.writes = Counting.compactions = 0
        server.proxy.reset_stats()
        start = time.perf_counter()
        lock_id = backend.lock(LockInfo(operation="apply"))
        state, token = backend.read()
        walker = Walker(plan, state or StateFile(), token, backend, runtime)
        result = walker.run()
        backend.unlock(lock_id)
        elapsed = time.perf_counter() - start
        stats = server.proxy.stats()
        if not result.ok:
            raise SystemExit(f"apply through the fakes failed: {result}")
        final, _ = GcsBackend(backend.url).read()
        if final is None or final != walker.state:
            raise SystemExit("the state read back differs from the state the Walker wrote")
        return {
            "n": n,
            "records": len(plan.resource_changes),
            "writes": Counting.writes,
            "compactions": Counting.compactions,
            "requests": stats["requests"],
            "total": stats["requests_total"],
            "bytes": stats["bytes_uploaded"],
            "down": stats["bytes_downloaded"],
            "final": len(final.to_json().encode()),
            "apply_s": elapsed,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_table(rows: list[dict[str, Any]], shape: str) -> None:
    print(f"GCS state backend during one apply ({shape}; fake-gcs-server, FakeRuntime, Walker):")
    methods = " ".join(f"{m:>6}" for m in METHODS)
    head = (
        f"{'N':>5} {'writes':>6} {'compact':>7} {methods} {'requests':>8} {'req/write':>9} "
        f"{'bytes uploaded':>14} {'bytes/res':>9} {'final state':>11} {'x final':>7} "
        f"{'growth':>6} {'rewrite est.':>13} {'downloaded':>10} {'apply s':>7}"
    )
    print(head)
    print("-" * len(head))
    prev: dict[str, Any] | None = None
    for r in rows:
        growth = f"{r['bytes'] / prev['bytes']:.1f}x" if prev else "-"
        counts = " ".join(f"{r['requests'].get(m, 0):>6}" for m in METHODS)
        rewrite = r["writes"] * r["final"] // 2
        print(
            f"{r['n']:>5} {r['writes']:>6} {r['compactions']:>7} {counts} {r['total']:>8} "
            f"{r['total'] / r['writes']:>9.2f} {r['bytes']:>14,} {r['bytes'] / r['n']:>9,.0f} "
            f"{r['final']:>11,} {r['bytes'] / r['final']:>7.1f} {growth:>6} {rewrite:>13,} "
            f"{r['down']:>10,} {r['apply_s']:>7.2f}"
        )
        prev = r


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000", help="comma-separated N")
    parser.add_argument("--shape", default="fanout", choices=SHAPES)
    args = parser.parse_args(argv)
    _, _, start_gcs_server = _helpers()
    logs = Path(tempfile.mkdtemp(prefix="substratus-gcs-bench-"))
    server = start_gcs_server(logs)
    os.environ["STORAGE_EMULATOR_HOST"] = server.url  # the backend's client goes to the proxy
    rows = []
    try:
        for n in (int(s) for s in args.sizes.split(",") if s.strip()):
            print(f"… N={n}", file=sys.stderr, flush=True)
            rows.append(run_one(server, n, args.shape))
    finally:
        server.stop()
        shutil.rmtree(logs, ignore_errors=True)
    print_table(rows, args.shape)


if __name__ == "__main__":
    main()
