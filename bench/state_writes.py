"""Bytes and writes the local state backend makes while one apply of N resources runs.

For each N it generates a configuration of N resources (``plan_scale.generate``; fan-out shape by
default), plans it (everything is created) and applies the plan with ``engine.apply.Walker``
through ``tests.support.fakes.FakeRuntime`` (nothing runs) into the real file backend,
``FileBackend("file://<tmp>/state", "default", tmp, journal=...)``, in two modes:

- ``rewrite`` (``journal=False``): every write rewrites the whole ``default.json`` atomically,
  which is what the backend did before the journal (and what Terraform does): ~2N writes of a
  state growing to N records, O(N²) bytes;
- ``journal`` (the default): a write appends the changed records to ``default.journal`` and the
  whole state is rewritten (compacted) only when the journal has grown to the size of the base:
  O(N) bytes.

Every byte handed to ``os.write`` while the apply runs is counted (the state's temp files, the
journal lines, the one-off backup: everything the backend writes), and so are the compactions
(``os.replace`` onto the state file) and the time spent in ``write``. ``growth`` is bytes(N) /
bytes(previous N of that mode); with N growing 10x it is ~100x when quadratic, ~10x when linear.
``x final`` is bytes written / size of the final state. ``rewrite`` above ``--rewrite-max``
(default 1,000) is skipped: 10,000 would write ~170 GB; its bytes are extrapolated instead.

Run from the repository root::

    python bench/state_writes.py                    # N = 10, 100, 1000, 10000
    python bench/state_writes.py --sizes 10,100,1000 --shape chain --modes journal
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from substratus.engine.apply import Walker
from substratus.engine.config import load_config
from substratus.engine.operation import PlanOptions, build_plan
from substratus.engine.statefile import StateFile
from substratus.state.local import FileBackend

BENCH = Path(__file__).resolve().parent
SHAPES = ("chain", "fanout")
MODES = ("rewrite", "journal")


def _helpers() -> tuple[Any, Any]:
    """``plan_scale.generate`` (sibling script) and ``tests.support.fakes.FakeRuntime``."""
    for path in (BENCH, BENCH.parent):  # appended, so PYTHONPATH can override substratus
        if str(path) not in sys.path:
            sys.path.append(str(path))
    from plan_scale import generate

    from tests.support.fakes import FakeRuntime

    return generate, FakeRuntime


class Counter:
    """Bytes passed to ``os.write`` and compactions (``os.replace`` onto ``target``)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)
        self.bytes = 0
        self.compactions = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        real_write, real_replace = os.write, os.replace

        def write(fd: int, data: Any) -> int:
            written = real_write(fd, data)
            self.bytes += written
            return written

        def replace(src: Any, dst: Any, **kwargs: Any) -> None:
            real_replace(src, dst, **kwargs)
            if os.fspath(dst) == self.target:
                self.compactions += 1

        os.write, os.replace = write, replace
        try:
            yield
        finally:
            os.write, os.replace = real_write, real_replace


class TimedBackend:
    """Delegates to a ``FileBackend``; counts the calls to ``write`` and the time they take."""

    def __init__(self, inner: FileBackend) -> None:
        self.inner = inner
        self.writes = 0
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def write(self, state: StateFile, expected_token: str | None, changed: list[str]) -> str:
        start = time.perf_counter()
        token = self.inner.write(state, expected_token, changed)
        self.seconds += time.perf_counter() - start
        self.writes += 1
        return token


def run_one(n: int, shape: str, mode: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"substratus-state-{n}-"))
    try:
        directory = tmp / "config"
        generate, fake_runtime = _helpers()
        generate(directory, n, shape)
        config = load_config([str(directory)])
        runtime = fake_runtime()
        plan = build_plan(config, None, runtime, PlanOptions(refresh=False))
        inner = FileBackend(f"file://{tmp / 'state'}", "default", tmp, journal=mode == "journal")
        backend = TimedBackend(inner)
        counter = Counter(inner.state_path)
        start = time.perf_counter()
        with counter.installed():
            walker = Walker(plan, StateFile(), None, backend, runtime, config_dir=str(directory))
            result = walker.run()
        elapsed = time.perf_counter() - start
        if not result.ok:
            raise SystemExit(f"apply through the fakes failed: {result}")
        final, _ = FileBackend(inner.directory).read()
        if final is None or final != walker.state:
            raise SystemExit("the state read back differs from the state the Walker wrote")
        return {
            "n": n,
            "mode": mode,
            "records": len(plan.resource_changes),
            "writes": backend.writes,
            "compactions": counter.compactions,
            "bytes": counter.bytes,
            "final": len(final.to_json().encode()),
            "write_s": backend.seconds,
            "apply_s": elapsed,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_table(rows: list[dict[str, Any]], shape: str) -> None:
    print(f"State writes during one apply ({shape}; real FileBackend, FakeRuntime, Walker):")
    head = (
        f"{'N':>6} {'mode':>7} {'writes':>6} {'compact':>7} {'bytes written':>15} "
        f"{'bytes/res':>9} {'final state':>12} {'x final':>7} {'growth':>7} {'write s':>8} "
        f"{'ms/write':>8} {'apply s':>8}"
    )
    print(head)
    print("-" * len(head))
    prev: dict[str, dict[str, Any]] = {}
    for r in rows:
        before = prev.get(r["mode"])
        growth = f"{r['bytes'] / before['bytes']:.1f}x" if before else "-"
        print(
            f"{r['n']:>6} {r['mode']:>7} {r['writes']:>6} {r['compactions']:>7} "
            f"{r['bytes']:>15,} {r['bytes'] / r['n']:>9,.0f} {r['final']:>12,} "
            f"{r['bytes'] / r['final']:>7.1f} {growth:>7} {r['write_s']:>8.2f} "
            f"{1000 * r['write_s'] / r['writes']:>8.2f} {r['apply_s']:>8.2f}"
        )
        prev[r["mode"]] = r
    rewrites = [r for r in rows if r["mode"] == "rewrite"]
    if rewrites:
        last = rewrites[-1]
        per_record = last["final"] / last["records"]
        n = 10_000
        projected = per_record * (n + 1) * (n + 2)  # 2 writes per record, sizes 1..N records
        print(
            f"\nrewrite extrapolated for N={n:,} (2 writes per resource, {per_record:,.0f} bytes "
            f"per record): ~{projected / 1e9:.1f} GB written in one apply"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000,10000", help="comma-separated N")
    parser.add_argument("--shape", default="fanout", choices=SHAPES)
    parser.add_argument("--modes", default=",".join(MODES), help="rewrite, journal or both")
    parser.add_argument("--rewrite-max", type=int, default=1000, help="largest N to rewrite")
    args = parser.parse_args(argv)
    modes = [m for m in MODES if m in args.modes.split(",")]
    rows = []
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        for mode in modes:
            if mode == "rewrite" and n > args.rewrite_max:
                continue
            print(f"… N={n} {mode}", file=sys.stderr, flush=True)
            rows.append(run_one(n, args.shape, mode))
    print_table(rows, args.shape)


if __name__ == "__main__":
    main()
