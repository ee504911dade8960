"""How long loading and planning take, and how much memory they use, as configurations grow.

For every size N and shape it generates a configuration directory in a temporary directory:
N resources as multi-document YAML split over ~10 files, all containers built from one shared
``local: {path: ./app}`` context (a tiny script in ``app/``) with a ``command``, so the local
runtime accepts them. Shapes:

- ``chain``: ``Dataset → Model(trainer on it) → Model(trainer on the previous model) → … →
  ModelServer`` (every trained Model also uses the one Dataset); the graph is one long path.
- ``fanout``: 3 Datasets and 3 base Models (loaders), then many trained Models, each on one base
  Model and one Dataset, and a ModelServer for (about) every trained Model.

Then, in a fresh subprocess per (N, shape), so that peak memory is that of one run only, it
times:

(a) ``load_config`` of the directory;
(b) ``build_plan(config, None, LocalRuntime, PlanOptions(refresh=False))``: everything is created;
(c) ``build_plan`` against a prior state in which everything is already applied (all ``no-op``).

The prior state is made in a separate, earlier subprocess without running anything: the plan of
(b) is applied by ``engine.apply.Walker`` through ``tests.support.fakes.FakeRuntime`` into a
``MemoryBackend`` (whose writes are kept in memory; the state is serialised once, at the end), and
saved as JSON. The measuring child reads it with ``StateFile.from_json`` (timed separately as
"state read": a real ``plan`` pays it too) and checks that the second plan is all no-ops.

Columns: ``load``, ``plan(create)``, ``plan(no-op)`` in seconds, ``total`` = their sum;
times are the best of ``--repeat`` runs (default 1), each in its own child;
``peak RSS`` = ``getrusage(RUSAGE_SELF).ru_maxrss`` of the measuring child (includes the
interpreter and imports; ``base RSS`` is the same value right after the imports);
``peak traced`` = ``tracemalloc`` peak over (a)–(c), measured in a second child, because tracing
slows Python down; ``state bytes`` = size of the state JSON for the N resources. A second table
gives the time the Walker took to make the prior state (apply through the fakes).
The target is 10,000 resources loaded and planned (a + b) in under 2 s on a 2-core machine.

Run from the repository root::

    python bench/plan_scale.py                              # sizes 100,1000,10000; both shapes
    python bench/plan_scale.py --sizes 100,1000 --shape chain
    python bench/plan_scale.py --no-trace                   # skip the tracemalloc children
    python bench/plan_scale.py --repeat 3                   # best of 3 (the machine is shared)

To profile the load and the plans (not the generator or the prior state) run the measurement in
the profiled process::

    python -m cProfile -o /tmp/plan10k.prof bench/plan_scale.py \\
        --sizes 10000 --shape chain --in-process --no-trace
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FILES = 10
SHAPES = ("chain", "fanout")
TARGET_N = 10_000
TARGET_SECONDS = 2.0

APP_SCRIPT = 'import os\nprint("hello from", os.environ.get("SUBSTRATUS_ADDRESS", "?"))\n'


# -- configuration generator ------------------------------------------------------------------
def _container() -> list[str]:
    return [
        "  container:",
        "    local: {path: ./app}",
        '    command: ["python3", "main.py"]',
    ]


def _dataset(name: str, i: int) -> list[str]:
    return [
        "kind: Dataset",
        f"name: {name}",
        "spec:",
        *_container(),
        "  loader:",
        f"    params: {{shard: {i}, lowercase: true, source: corpus-{i}}}",
    ]


def _base_model(name: str, i: int) -> list[str]:
    return [
        "kind: Model",
        f"name: {name}",
        "spec:",
        *_container(),
        "  loader:",
        f"    params: {{order: {2 + i % 3}, vocab: 32000}}",
    ]


def _trained_model(name: str, i: int, dataset: str, base: str | None) -> list[str]:
    lines = [
        "kind: Model",
        f"name: {name}",
        "spec:",
        *_container(),
        "  trainer:",
    ]
    if base is not None:
        lines.append(f"    baseModel: {base}")
    lines += [
        f"    dataset: {{name: {dataset}}}",
        f"    params: {{epochs: {1 + i % 3}, learningRate: 0.0001, seed: {i}}}",
        "    resources: {cpu: 4, memory: 16}",
    ]
    return lines


def _server(name: str, model: str, i: int) -> list[str]:
    return [
        "kind: ModelServer",
        f"name: {name}",
        "spec:",
        *_container(),
        f"  model: {model}",
        f"  params: {{port: {8000 + i % 1000}}}",
    ]


def documents(n: int, shape: str) -> list[list[str]]:
    """The YAML documents (as lines) of a configuration of ``n`` resources of ``shape``."""
    if n < 3:
        raise ValueError("a configuration needs at least 3 resources")
    docs: list[list[str]] = []
    if shape == "chain":
        docs.append(_dataset("data-0", 0))
        previous: str | None = None
        for i in range(1, n - 1):
            name = f"model-{i}"
            docs.append(_trained_model(name, i, "data-0", previous))
            previous = name
        docs.append(_server("server", previous or "model-1", 0))
    elif shape == "fanout":
        roots = 3 if n >= 8 else 1
        for i in range(roots):
            docs.append(_dataset(f"data-{i}", i))
        for i in range(roots):
            docs.append(_base_model(f"base-{i}", i))
        rest = n - 2 * roots
        trained = (rest + 1) // 2
        for i in range(trained):
            docs.append(_trained_model(f"tuned-{i}", i, f"data-{i % roots}", f"base-{i % roots}"))
        for i in range(rest - trained):
            docs.append(_server(f"tuned-{i}", f"tuned-{i}", i))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    assert len(docs) == n
    return docs


def generate(directory: Path, n: int, shape: str) -> None:
    """Write ``directory/app/main.py`` and ``directory/resources-NN.yaml`` (≈10 files)."""
    app = directory / "app"
    app.mkdir(parents=True)
    (app / "main.py").write_text(APP_SCRIPT, encoding="utf-8")
    docs = documents(n, shape)
    files = min(FILES, n)
    per_file = -(-n // files)
    for f in range(files):
        chunk = docs[f * per_file : (f + 1) * per_file]
        if not chunk:
            break
        header = f"# generated by bench/plan_scale.py: {shape}, {n} resources, part {f}\n"
        text = header + "\n---\n".join("\n".join(d) for d in chunk) + "\n"
        (directory / f"resources-{f:02d}.yaml").write_text(text, encoding="utf-8")


# -- children ---------------------------------------------------------------------------------
def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _local_runtime(directory: Path) -> Any:
    from substratus.runtimes.local import LocalRuntime

    workdir = directory / ".substratus"
    return LocalRuntime(workdir=workdir, artifacts_url=(workdir / "artifacts").resolve().as_uri())


def prepare_state(directory: Path, state_path: Path) -> dict[str, Any]:
    """Apply the create-plan through the fakes and save the resulting state as JSON."""
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))  # for tests.support; appended so PYTHONPATH can override
    from substratus.engine.apply import Walker
    from substratus.engine.config import load_config
    from substratus.engine.operation import PlanOptions, build_plan
    from substratus.engine.statefile import StateFile
    from tests.support.fakes import FakeRuntime, MemoryBackend

    class DeferredMemoryBackend(MemoryBackend):
        """``MemoryBackend`` with the same compare-and-swap, but no serialisation per write
        (``MemoryBackend.write`` calls ``to_json()`` each time: O(N²) for N resources)."""

        def write(self, state: StateFile, expected_token: str | None, changed: list[str]) -> str:
            current = str(self.version) if self.version else None
            if current != expected_token:
                raise AssertionError("state changed since it was read")
            self.version += 1
            self.writes += 1
            return str(self.version)

    config = load_config([str(directory)])
    plan = build_plan(config, None, _local_runtime(directory), PlanOptions(refresh=False))
    state = StateFile()
    backend = DeferredMemoryBackend()
    start = time.perf_counter()
    result = Walker(plan, state, None, backend, FakeRuntime(), config_dir=str(directory)).run()
    walk = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"applying through the fakes failed: {result}")
    text = state.to_json()
    state_path.write_text(text, encoding="utf-8")
    return {
        "walk_s": walk,
        "writes": backend.writes,
        "records": len(state.resources),
        "state_bytes": len(text.encode()),
    }


def measure(directory: Path, state_path: Path, trace: bool) -> dict[str, Any]:
    """Time (a) load, (b) plan(create), (c) plan(no-op) in this process."""
    from substratus.cli import tune_gc
    from substratus.engine.config import load_config
    from substratus.engine.operation import PlanOptions, build_plan
    from substratus.engine.plan import Action
    from substratus.engine.statefile import StateFile

    tune_gc("plan")  # as `substratus plan` does
    runtime = _local_runtime(directory)
    base_rss = _maxrss_mib()
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    config = load_config([str(directory)])
    t1 = time.perf_counter()
    created = build_plan(config, None, runtime, PlanOptions(refresh=False))
    t2 = time.perf_counter()
    state = StateFile.from_json(state_path.read_text(encoding="utf-8"))
    t3 = time.perf_counter()
    noop = build_plan(config, state, runtime, PlanOptions(refresh=False))
    t4 = time.perf_counter()
    traced = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    if trace:
        tracemalloc.stop()
    not_created = [c.address for c in created.resource_changes if c.action is not Action.CREATE]
    not_noop = [c.address for c in noop.resource_changes if c.action is not Action.NOOP]
    if not_created or not_noop:
        raise SystemExit(
            f"unexpected actions: not create {not_created[:5]}, not no-op {not_noop[:5]}"
        )
    return {
        "resources": len(config.resources),
        "load_s": t1 - t0,
        "plan_create_s": t2 - t1,
        "state_read_s": t3 - t2,
        "plan_noop_s": t4 - t3,
        "base_rss_mib": base_rss,
        "peak_rss_mib": _maxrss_mib(),
        "peak_traced_mib": traced,
    }


def _child(args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}{out.stdout}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- driver -----------------------------------------------------------------------------------
def run_one(
    n: int, shape: str, trace: bool, in_process: bool, keep: bool, repeat: int = 1
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"substratus-bench-{shape}-{n}-"))
    try:
        directory = tmp / "config"
        state_path = tmp / "state.json"
        generate(directory, n, shape)
        prep = _child(["--prepare", str(directory), str(state_path)])
        runs = []
        for _ in range(max(1, repeat)):
            if in_process:
                runs.append(measure(directory, state_path, trace=False))
            else:
                runs.append(_child(["--measure", str(directory), str(state_path)]))
        row = dict(runs[0])
        for key in ("load_s", "plan_create_s", "state_read_s", "plan_noop_s"):
            row[key] = min(r[key] for r in runs)  # best of --repeat: the least disturbed run
        row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
        if trace:
            traced = _child(["--measure", str(directory), str(state_path), "--trace"])
            row["peak_traced_mib"] = traced["peak_traced_mib"]
        row.update(n=n, shape=shape, **prep)
        return row
    finally:
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _fmt(value: float | None, width: int, spec: str) -> str:
    return format("-" if value is None else format(value, spec), f">{width}")


def print_tables(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'N':>6} {'shape':<7} {'in plan':>7} {'load s':>7} {'plan(create) s':>14} "
        f"{'plan(no-op) s':>13} {'total s':>8} {'state read s':>12} {'base RSS MiB':>12} "
        f"{'peak RSS MiB':>12} {'peak traced MiB':>15} {'state bytes':>12}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        total = r["load_s"] + r["plan_create_s"] + r["plan_noop_s"]
        print(
            f"{r['n']:>6} {r['shape']:<7} {r['resources']:>7} {r['load_s']:>7.3f} "
            f"{r['plan_create_s']:>14.3f} {r['plan_noop_s']:>13.3f} {total:>8.3f} "
            f"{r['state_read_s']:>12.3f} {r['base_rss_mib']:>12.1f} {r['peak_rss_mib']:>12.1f} "
            f"{_fmt(r['peak_traced_mib'], 15, '.1f')} {r['state_bytes']:>12,}"
        )
    print()
    print("Prior state (apply of the create-plan through FakeRuntime + MemoryBackend, Walker):")
    head2 = f"{'N':>6} {'shape':<7} {'records':>7} {'writes':>7} {'walker s':>9} {'bytes/rec':>9}"
    print(head2)
    print("-" * len(head2))
    for r in rows:
        print(
            f"{r['n']:>6} {r['shape']:<7} {r['records']:>7} {r['writes']:>7} "
            f"{r['walk_s']:>9.2f} {r['state_bytes'] / r['records']:>9.0f}"
        )
    big = [r for r in rows if r["n"] >= TARGET_N]
    if big:
        print()
    for r in big:
        seconds = r["load_s"] + r["plan_create_s"]
        verdict = "meets" if seconds < TARGET_SECONDS else "MISSES"
        print(
            f"target: {r['n']} {r['shape']} loaded + planned in {seconds:.2f} s "
            f"({verdict} the {TARGET_SECONDS:.0f} s target; plan alone {r['plan_create_s']:.2f} s)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated N")
    parser.add_argument("--shape", default="chain,fanout", help="chain, fanout or both")
    parser.add_argument("--no-trace", action="store_true", help="skip tracemalloc children")
    parser.add_argument(
        "--in-process", action="store_true", help="measure in this process (for cProfile)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated directories")
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure K times per (N, shape); report the best"
    )
    parser.add_argument("--prepare", nargs=2, metavar=("DIR", "STATE"), help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=2, metavar=("DIR", "STATE"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.prepare:
        print(json.dumps(prepare_state(Path(args.prepare[0]), Path(args.prepare[1]))))
        return
    if args.measure:
        result = measure(Path(args.measure[0]), Path(args.measure[1]), args.trace)
        print(json.dumps(result))
        return

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    shapes = [s.strip() for s in args.shape.split(",") if s.strip()]
    for s in shapes:
        if s not in SHAPES:
            parser.error(f"unknown shape {s!r}; use {', '.join(SHAPES)}")
    rows = []
    for n in sizes:
        for shape in shapes:
            print(f"… {shape} N={n}", file=sys.stderr, flush=True)
            rows.append(
                run_one(n, shape, not args.no_trace, args.in_process, args.keep, args.repeat)
            )
    print_tables(rows)


if __name__ == "__main__":
    main()
