"""substratus side by side with OpenTofu and DVC, on graphs of the same shape, in one run.

Every tool gets the same graphs (``bench/versus_graphs.py``: chains of dataset → base model →
trained model → server; OpenTofu ``terraform_data`` resources with ``triggers_replace`` and a
``local-exec`` provisioner running ``true``; DVC stages whose command touches their output) and
the same work, each through its command line, end to end (start-up, loading, planning, rendering
the text to a file):

- ``startup-help``, ``startup-version``: ``--help``; ``version`` (DVC: ``--version``);
- ``validate-N``: ``validate`` of N resources (``--validate-size``; OpenTofu ``validate``; DVC has
  no such command);
- ``plan-N``: plan from nothing (DVC: ``dvc status``) of N resources (``--sizes``; with servers);
- ``apply-N``: apply of N trivial jobs from nothing (``--apply-sizes``; no servers), parallelism
  10 (``--parallelism``; substratus ``--parallelism``, OpenTofu ``-parallelism``; ``dvc repro``
  runs its stages one by one, and by default only up to ``--dvc-apply-max`` of them);
- ``noop-N``: a plan with refresh right after an apply of the same N jobs (``--noop-size``),
  which must find nothing to do (``--detailed-exitcode`` answers 0; DVC: "up to date").

Work items run one after the other; inside one, the tools are interleaved (A B C A B C …) for
``--rounds`` rounds (at least 3). Each item runs in a fresh temporary directory per tool; an
apply gets a fresh directory (so an empty state) every round. No directory is removed before the
run ends (then the whole temporary directory is): an ext4 file system without a journal (such as
the one of the README's table: the report names the file system) skips every inode deleted in
the last minute — six while its inode table block is unwritten — when it looks for a free one,
so removing one round's files (about 14 per substratus job) made the next round's file
creations search past all of them; a user's apply does not follow the deletion of thousands of
files. Untimed set-up: writing the files,
``tofu init`` (offline: only the built-in provider), ``dvc init --no-scm``, the apply before a
``noop`` item, and compiling substratus's modules to bytecode once (``compile_bytecode``: an
installed package has its ``.pyc`` files, as OpenTofu is a built binary and DVC's site-packages
are compiled; without them, and with ``PYTHONDONTWRITEBYTECODE`` set, every run would compile
substratus's sources again), and filling substratus's code cache once (``warm_code_cache``:
every work once on a small graph, with the cache in ``XDG_CACHE_HOME`` under the run's temporary
directory, as a user's first commands fill theirs; the timed runs read it).

Measured per run: wall time (from the start of the process to its exit), CPU time (user + system
of the process and of every descendant it waited for, from ``os.wait4``: substratus's supervisor
processes and jobs, OpenTofu's provisioner shells, DVC's commands) and peak memory (``ru_maxrss``
from the same ``os.wait4``: the largest resident set among the process and those descendants).
Printed: min and median wall time, median CPU time, the highest peak memory, and the ratios of the
medians substratus / OpenTofu and substratus / DVC (below 1: substratus is faster). The load
average is printed before and after: on a shared machine the figures are noisy. Nothing is
asserted: these are measurements, not tests, and this script is not run in CI.

The tools: substratus is the ``substratus`` command of a virtual environment into which this
checkout is installed as a user installs it (``pip install .``: not editable, compiled to
bytecode; made untimed in the run's temporary directory, with its dependencies from the package
index) — or, with ``--substratus-here``, ``python -m substratus`` from this interpreter
(``PYTHONPATH`` decides which checkout; a development install's ``.pth`` hooks then run at every
start). OpenTofu is ``--tofu``, or ``tofu`` on ``PATH``, or built once from the Go module
proxy by ``scripts/opentofu.sh`` (pinned version, cached outside the repository). DVC is
``--dvc``, or ``dvc`` on ``PATH``, or importable here, or a virtual environment under
``${XDG_CACHE_HOME:-~/.cache}/substratus/dvc/<version>/venv`` (created with pip when missing,
unless ``--no-install``); a tool that cannot be had is shown as "not installed".

Run from the repository root::

    python bench/versus.py                                    # everything, 3 rounds
    python bench/versus.py --only startup,plan-100 --rounds 5
    python bench/versus.py --only apply --apply-sizes 100 --tools substratus,tofu
    python bench/versus.py --sizes 100,1000 --json versus.json    # the table, and JSON
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from versus_graphs import Node, graph, write_dvc, write_substratus, write_tofu

REPO = Path(__file__).resolve().parents[1]
DVC_VERSION = "3.67.1"
RUN_TIMEOUT = 1800.0  # seconds; a run that takes longer is killed and counted as failed
TOOL_KEYS = ("substratus", "tofu", "dvc")
LABELS = {"substratus": "substratus", "tofu": "OpenTofu", "dvc": "DVC"}
GROUPS = ("startup", "validate", "plan", "apply", "noop")


# -- one timed run ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One timed process: wall and CPU seconds, peak resident set (MiB), exit code."""

    wall: float
    cpu: float
    rss_mib: float
    code: int


def timed(argv: Sequence[str], cwd: Path, env: dict[str, str], log: Path) -> Run:
    """Run ``argv`` in ``cwd`` with its output in ``log``; measure it through ``os.wait4``.

    The process gets its own session; after ``RUN_TIMEOUT`` its process group is killed."""
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timer = threading.Timer(RUN_TIMEOUT, _kill_group, (proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped here: Popen must not wait for it again
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, code)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, 9)


def untimed(argv: Sequence[str], cwd: Path, env: dict[str, str], log: Path) -> None:
    """A set-up step; its failure ends the work item for that tool (``SetupError``)."""
    run = timed(argv, cwd, env, log)
    if run.code != 0:
        raise SetupError(f"{' '.join(argv)} exited {run.code}", log)


class SetupError(Exception):
    def __init__(self, message: str, log: Path) -> None:
        super().__init__(message)
        self.log = log


# -- the tools --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tool:
    """How to drive one tool: its command, environment, files, and the argv of each work."""

    key: str
    argv: tuple[str, ...]
    env: dict[str, str]
    write: Callable[[Path, list[Node]], None]
    init: tuple[tuple[str, ...], ...]
    work: dict[str, tuple[str, ...]]
    version: str = ""

    @property
    def label(self) -> str:
        return LABELS[self.key]

    def command(self, group: str) -> list[str]:
        return [*self.argv, *self.work[group]]

    def ok(self, group: str, run: Run, log: Path) -> bool:
        """Did the run do what the work item asks (a no-op plan must find nothing to do)?"""
        if run.code != 0:
            return False
        if group == "noop" and self.key == "dvc":
            return "up to date" in log.read_text(encoding="utf-8", errors="replace")[-4000:]
        return True


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        NO_COLOR="1",
        TF_IN_AUTOMATION="1",
        CHECKPOINT_DISABLE="1",
        TF_INPUT="0",
        DVC_NO_ANALYTICS="1",
        TF_CLI_CONFIG_FILE=os.devnull,  # no user configuration: no mirror, cache or registry
    )
    return env


def substratus_tool(parallelism: int, argv: tuple[str, ...], env: dict[str, str]) -> Tool:
    plan = ("plan", "-f", ".", "--no-color")
    par = str(parallelism)
    return Tool(
        key="substratus",
        argv=argv,
        env=env,
        write=write_substratus,
        init=(),
        work={
            "startup-help": ("--help",),
            "startup-version": ("version",),
            "validate": ("validate", "-f", ".", "--no-color"),
            "plan": plan,
            "apply": ("apply", "-f", ".", "--auto-approve", "--no-color", "--parallelism", par),
            "noop": (*plan, "--detailed-exitcode"),
        },
    )


def substratus_venv(root: Path) -> tuple[str, ...] | None:
    """``substratus`` installed from this checkout into a new virtual environment under
    ``root`` (``pip install .``; untimed): its command, or None when it cannot be made."""
    venv = root / "substratus-venv"
    print(f"… substratus: pip install {REPO} into {venv}", file=sys.stderr, flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(REPO)],
    ]
    unset = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")  # the installed copy, compiled
    env = {k: v for k, v in os.environ.items() if k not in unset}
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(f"   substratus could not be installed ({' '.join(step)}):", file=sys.stderr)
            print(done.stderr[-2000:], file=sys.stderr)
            return None
    return (str(venv / "bin" / "substratus"),)


def compile_bytecode(tool: Tool) -> None:
    """Compile the substratus package ``tool`` runs (the checkout ``PYTHONPATH`` names) to
    bytecode, as installing it does; untimed. ``__pycache__`` is ignored by git."""
    code = (
        "import compileall, importlib.util, os, sys; "
        "spec = importlib.util.find_spec('substratus'); "
        "sys.exit(not compileall.compile_dir(os.path.dirname(spec.origin), quiet=1))"
    )
    subprocess.run([sys.executable, "-c", code], env=tool.env, check=True)


def warm_code_cache(tool: Tool, where: Path) -> None:
    """Fill substratus's code cache (``substratus.cli.codecache``, in the tool's own
    ``XDG_CACHE_HOME``) as a user's first commands do: every work once on a small graph;
    untimed, as installing compiles the modules. The timed runs keep the environment's
    ``PYTHONDONTWRITEBYTECODE``: with it set they read the cache and write nothing."""
    env = {k: v for k, v in tool.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    log = where / "warm-up.log"
    for directory, jobs_only in (("plan", False), ("apply", True)):
        (where / directory).mkdir(parents=True)
        tool.write(where / directory, graph(4, jobs_only=jobs_only))
    for group, directory in [(g, "plan") for g in ("startup-help", "validate", "plan")] + [
        ("apply", "apply"),
        ("noop", "apply"),
    ]:
        untimed(tool.command(group), where / directory, env, log)


def tofu_tool(binary: str, parallelism: int) -> Tool:
    plan = ("plan", "-input=false", "-no-color")
    par = parallelism
    return Tool(
        key="tofu",
        argv=(binary,),
        env=base_env(),
        write=write_tofu,
        init=(("init", "-input=false", "-no-color"),),
        work={
            "startup-help": ("--help",),
            "startup-version": ("version",),
            "validate": ("validate", "-no-color"),
            "plan": plan,
            "apply": ("apply", "-auto-approve", "-input=false", "-no-color", f"-parallelism={par}"),
            "noop": (*plan, "-detailed-exitcode"),
        },
    )


def dvc_tool(argv: tuple[str, ...]) -> Tool:
    return Tool(
        key="dvc",
        argv=argv,
        env=base_env(),
        write=write_dvc,
        init=(("init", "--no-scm", "-q"),),
        work={
            "startup-help": ("--help",),
            "startup-version": ("--version",),
            "plan": ("status",),
            "apply": ("repro",),
            "noop": ("status",),
        },
    )


def find_tofu(explicit: str | None, build: bool) -> str | None:
    """``--tofu``, ``tofu`` on PATH, or the binary ``scripts/opentofu.sh`` builds (cached)."""
    if explicit:
        return explicit
    found = shutil.which("tofu")
    if found or not build:
        return found
    print("… OpenTofu: scripts/opentofu.sh (the first time builds it: minutes)", file=sys.stderr)
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "opentofu.sh")], capture_output=True, text=True
    )
    if out.returncode != 0:
        print(f"   OpenTofu could not be built:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return out.stdout.strip().splitlines()[-1]


def dvc_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "substratus" / "dvc" / DVC_VERSION / "venv"


def find_dvc(explicit: str | None, install: bool) -> tuple[str, ...] | None:
    """``--dvc``, ``dvc`` on PATH, ``python -m dvc``, or the cached venv (made with pip)."""
    if explicit:
        return (explicit,)
    found = shutil.which("dvc")
    if found:
        return (found,)
    probe = subprocess.run([sys.executable, "-c", "import dvc"], capture_output=True)
    if probe.returncode == 0:
        return (sys.executable, "-m", "dvc")
    venv = dvc_venv()
    binary = venv / "bin" / "dvc"
    if not binary.exists() and install:
        print(f"… DVC: pip install dvc=={DVC_VERSION} into {venv}", file=sys.stderr)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "-q", f"dvc=={DVC_VERSION}"],
        ]
        for step in steps:
            if subprocess.run(step, capture_output=True).returncode != 0:
                print(f"   DVC could not be installed ({' '.join(step)})", file=sys.stderr)
                return None
    return (str(binary),) if binary.exists() else None


def tool_version(tool: Tool) -> str:
    out = subprocess.run(
        tool.command("startup-version"), capture_output=True, text=True, env=tool.env
    )
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "?"


# -- work items -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One work item: ``group`` (startup-help, startup-version, validate, plan, apply, noop),
    its size."""

    group: str
    size: int = 0

    @property
    def name(self) -> str:
        return self.group if self.group.startswith("startup") else f"{self.group}-{self.size}"

    def describe(self) -> str:
        n = f"{self.size:,}"
        return {
            "startup-help": "start-up: `--help`",
            "validate": f"validate, {n} resources",
            "startup-version": "start-up: `version` (DVC `--version`)",
            "plan": f"plan from nothing, {n} resources (CLI, end to end)",
            "apply": f"apply {n} trivial jobs, parallelism 10 (DVC: one by one)",
            "noop": f"no-op plan with refresh after apply, {n} resources",
        }[self.group]


@dataclass
class Result:
    """The runs of one tool on one item (or why there are none)."""

    item: str
    tool: str
    runs: list[Run] = field(default_factory=list)
    skipped: str = ""
    failed: str = ""

    def stat(self, what: str) -> float | None:
        values = [getattr(r, what) for r in self.runs]
        if not values or self.failed:
            return None
        if what == "rss_mib":
            return float(max(values))
        return float(statistics.median(values))

    def min_wall(self) -> float | None:
        return min(r.wall for r in self.runs) if self.runs and not self.failed else None


@dataclass
class Context:
    tools: list[Tool]
    rounds: int
    root: Path
    dvc_apply_max: int


def prepare(tool: Tool, item: Item, where: Path, log: Path) -> None:
    """Write the tool's files for ``item`` into the fresh ``where`` and run its set-up."""
    where.mkdir(parents=True)
    if item.group.startswith("startup"):
        return
    tool.write(where, graph(item.size, jobs_only=item.group not in ("plan", "validate")))
    for step in tool.init:
        untimed([*tool.argv, *step], where, tool.env, log)
    if item.group == "noop":
        untimed(tool.command("apply"), where, tool.env, log)


def run_item(item: Item, ctx: Context) -> list[Result]:
    """``ctx.rounds`` rounds of every tool on ``item``, interleaved."""
    results = {t.key: Result(item.name, t.key) for t in ctx.tools}
    if item.group == "apply" and item.size > ctx.dvc_apply_max and "dvc" in results:
        results["dvc"].skipped = f"skipped (over --dvc-apply-max {ctx.dvc_apply_max})"
    for tool in ctx.tools:
        if item.group not in tool.work:
            results[tool.key].skipped = "no such command"
    base = ctx.root / item.name
    for r in range(ctx.rounds):
        for tool in ctx.tools:
            result = results[tool.key]
            if result.skipped or result.failed:
                continue
            fresh = r == 0 or item.group == "apply"
            where = base / (f"{tool.key}-{r}" if item.group == "apply" else tool.key)
            log = base / f"{tool.key}.log"
            try:
                if fresh:
                    prepare(tool, item, where, log)
                run = timed(tool.command(item.group), where, tool.env, log)
            except SetupError as e:
                result.failed = f"set-up failed: {e}"
                _tail(e.log)
                continue
            if not tool.ok(item.group, run, log):
                result.failed = f"failed (exit {run.code})"
                _tail(log)
                continue
            result.runs.append(run)
    return list(results.values())


def _tail(log: Path) -> None:
    text = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
    print(f"   see {log}:\n" + "\n".join("   | " + line for line in text), file=sys.stderr)


# -- output -----------------------------------------------------------------------------------
def _cell(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _ratio(results: dict[str, Result], other: str, what: str) -> str:
    mine, theirs = results.get("substratus"), results.get(other)
    if mine is None or theirs is None:
        return "—"
    a, b = mine.stat(what), theirs.stat(what)
    if a is None or b is None or b <= 0:
        return "—"
    return f"{a / b:.2f}"


def _why(result: Result | None) -> str:
    if result is None:
        return "not run"
    return result.skipped or result.failed


def print_table(
    items: list[Item], results: list[Result], tools: dict[str, str], requested: list[str]
) -> None:
    """One Markdown table: a row per item and tool; the ratios on substratus's row."""
    by_item: dict[str, dict[str, Result]] = {}
    for r in results:
        by_item.setdefault(r.item, {})[r.tool] = r
    print(
        "| work | tool | wall min s | wall median s | CPU median s | peak RSS MiB "
        "| substratus / OpenTofu (wall, CPU) | substratus / DVC (wall, CPU) |"
    )
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    for item in items:
        row = by_item.get(item.name, {})
        for i, key in enumerate(TOOL_KEYS):
            label = LABELS[key] if i else f"**{LABELS[key]}**"
            work = item.describe() if i == 0 else ""
            if key not in tools:
                why = "not installed" if key in requested else "not run (--tools)"
                print(f"| {work} | {label} | {why} | | | | | |")
                continue
            result = row.get(key)
            why = _why(result)
            if result is None or why:
                print(f"| {work} | {label} | {why} | | | | | |")
                continue
            ratios = " | |"
            if key == "substratus":
                ratios = " | ".join(
                    f"{_ratio(row, other, 'wall')}, {_ratio(row, other, 'cpu')}"
                    for other in ("tofu", "dvc")
                )
                ratios = f" {ratios} |"
            print(
                f"| {work} | {label} | {_cell(result.min_wall(), '.3f')} "
                f"| {_cell(result.stat('wall'), '.3f')} | {_cell(result.stat('cpu'), '.3f')} "
                f"| {_cell(result.stat('rss_mib'), '.0f')} |{ratios}"
            )


def machine() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "command": "python bench/versus.py " + " ".join(sys.argv[1:]),
    }


def filesystem(path: Path) -> str:
    """The type of the file system holding ``path`` (from ``/proc/self/mountinfo``), and for
    ext4 whether it has a journal (``/sys/fs/ext4/<device>/journal_task``); "unknown" elsewhere."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return "unknown"
    best, kind, source = "", "unknown", ""
    for line in lines:  # mount point is field 5; after " - ": type, source
        fields, _, tail = line.partition(" - ")
        point = fields.split()[4]
        inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best) and tail:
            best, (kind, source) = point, tail.split()[:2]
    if kind != "ext4":
        return kind
    task = Path("/sys/fs/ext4") / Path(source).name / "journal_task"
    try:
        journal = task.read_text().strip() != "<none>"
    except OSError:
        return "ext4"
    return "ext4" if journal else "ext4 without a journal"


def print_report(meta: dict[str, Any], items: list[Item], results: list[Result]) -> None:
    tools: dict[str, str] = meta["tools"]
    print(f"# substratus versus OpenTofu and DVC — {meta['date']}")
    print()
    print(f"- machine: {meta['cpus']} CPUs, {meta['platform']}, Python {meta['python']}")
    for key in TOOL_KEYS:
        if key in meta["requested"]:
            print(f"- {LABELS[key]}: {tools.get(key, 'not installed')}")
    print(f"- rounds: {meta['rounds']} (interleaved); command: `{meta['command']}`")
    print(f"- file system of the runs: {meta['filesystem']}")
    load = meta["load"]
    print(f"- load average (1 min) before / after: {load[0]:.2f} / {load[-1]:.2f}; ", end="")
    print(f"highest seen between items: {max(load):.2f}")
    print()
    print_table(items, results, tools, meta["requested"])
    print()
    print("Ratios are of the medians; below 1 substratus is faster or uses less.")


# -- driver -----------------------------------------------------------------------------------
def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def select_items(args: argparse.Namespace) -> list[Item]:
    """Every item the size options make, filtered by ``--only`` (groups or exact names)."""
    items = [Item("startup-help"), Item("startup-version"), Item("validate", args.validate_size)]
    items += [Item("plan", n) for n in _sizes(args.sizes)]
    items += [Item("apply", n) for n in _sizes(args.apply_sizes)]
    items += [Item("noop", args.noop_size)]
    if not args.only:
        return items
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = wanted - set(GROUPS) - {i.name for i in items} - {i.group for i in items}
    if unknown:
        names = ", ".join([*GROUPS, *(i.name for i in items)])
        raise SystemExit(f"--only: unknown {', '.join(sorted(unknown))} (known: {names})")
    return [
        i for i in items if i.name in wanted or i.group in wanted or i.group.split("-")[0] in wanted
    ]


def select_tools(args: argparse.Namespace, root: Path) -> list[Tool]:
    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(wanted) - set(TOOL_KEYS)
    if unknown:
        raise SystemExit(f"--tools: unknown {', '.join(sorted(unknown))} (known: {TOOL_KEYS})")
    tools: list[Tool] = []
    for key in wanted:
        if key == "substratus":
            if args.substratus_here:
                argv: tuple[str, ...] | None = (sys.executable, "-m", "substratus")
                env = base_env()
            else:
                argv = substratus_venv(root)
                env = {k: v for k, v in base_env().items() if k != "PYTHONPATH"}
            if argv:
                env["XDG_CACHE_HOME"] = str(root / "substratus-cache")  # its code cache
                tools.append(substratus_tool(args.parallelism, argv, env))
        elif key == "tofu":
            binary = find_tofu(args.tofu, build=not args.no_install)
            if binary:
                tools.append(tofu_tool(binary, args.parallelism))
        else:
            argv = find_dvc(args.dvc, install=not args.no_install)
            if argv:
                tools.append(dvc_tool(argv))
    return tools


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--sizes", default="100,1000,10000", help="plan sizes (comma-separated)")
    add("--apply-sizes", default="100,1000", help="apply sizes (comma-separated)")
    add("--noop-size", type=int, default=100, help="size of the no-op plan after apply")
    add("--validate-size", type=int, default=12, help="size of the configuration validated")
    add("--substratus-here", action="store_true", help="python -m substratus, not a venv")
    add("--rounds", type=int, default=3, help="interleaved rounds per item (at least 3)")
    add("--only", default="", help="items or groups: startup, plan, apply, noop, plan-100, …")
    add("--tools", default=",".join(TOOL_KEYS), help="substratus, tofu, dvc (comma-separated)")
    add("--parallelism", type=int, default=10, help="apply parallelism (substratus, OpenTofu)")
    add("--dvc-apply-max", type=int, default=100, help="largest apply given to DVC")
    add("--tofu", help="the tofu binary (default: PATH, else scripts/opentofu.sh)")
    add("--dvc", help="the dvc command (default: PATH, python -m dvc, else the cached venv)")
    add("--no-install", action="store_true", help="neither build OpenTofu nor install DVC")
    add("--json", metavar="FILE", help="also write the results as JSON to FILE (-: stdout only)")
    add("--keep", action="store_true", help="keep the temporary directories and logs")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be at least 3 (interleaved A B A B A B)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    items = select_items(args)
    root = Path(tempfile.mkdtemp(prefix="substratus-versus-"))
    tools = select_tools(args, root)
    meta = machine()
    for tool in tools:
        if tool.key == "substratus" and args.substratus_here:
            compile_bytecode(tool)
        if tool.key == "substratus":
            warm_code_cache(tool, root / "warm-up")
    meta["substratus_install"] = "here" if args.substratus_here else "venv (pip install .)"
    meta.update(rounds=args.rounds, tools={t.key: tool_version(t) for t in tools})
    meta["requested"] = [t.strip() for t in args.tools.split(",") if t.strip()]
    meta["load"] = [os.getloadavg()[0]]
    meta["filesystem"] = filesystem(root)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` cleans up
    ctx = Context(tools, args.rounds, root, args.dvc_apply_max)
    results: list[Result] = []
    try:
        for item in items:
            print(f"… {item.name}", file=sys.stderr, flush=True)
            results += run_item(item, ctx)
            meta["load"].append(os.getloadavg()[0])
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        rows = [{**asdict(r), "summary": _medians(r)} for r in results]
        text = json.dumps({"meta": meta, "results": rows}, indent=2)
        if args.json == "-":
            print(text)
            return
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print_report(meta, items, results)


def _medians(result: Result) -> dict[str, float | None]:
    return {
        "wall_min": result.min_wall(),
        "wall": result.stat("wall"),
        "cpu": result.stat("cpu"),
        "rss_mib_max": result.stat("rss_mib"),
    }


if __name__ == "__main__":
    main()
