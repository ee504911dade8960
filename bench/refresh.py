"""API requests and wall time of a Kubernetes apply and refresh as the number of resources grows.

The refresh (``KubernetesRuntime.refresh``, ``runtimes/kubernetes/refresh.py``) must make one
LIST per kind per namespace, whatever the number N of resources recorded in the state (DESIGN §5,
§8): its request count must not grow with N.

One real control plane (``tests/support/kube.py``: etcd, kube-apiserver, controller-manager,
scheduler and kwok with one fake GPU node; kwok completes Job pods in about a second and makes
Deployments available) is started for the whole run, or an existing cluster is used with
``--kubeconfig``. For every N (default 10, 100, 1,000):

1. a fresh namespace, and a configuration of N resources: ``kind: Project {runtime: kubernetes,
   cloud: kind, artifacts: file://<tmp>/artifacts-N}`` and a realistic mix, so that every kind
   the refresh lists exists: one Notebook on ``data-0`` (Pod + Service), one trained Model on
   ``data-0`` with one GPU (a Job), ``max(1, N // 50)`` ModelServers of that Model (Deployment +
   Service each) and Datasets for the rest (image loaders, one Job each); 10 → 7 Datasets,
   1 Model, 1 ModelServer, 1 Notebook; 1,000 → 977, 1, 20, 1;
2. ``python -m substratus apply --auto-approve --parallelism 50`` through the real CLI
   (``KUBECONFIG`` set, ``SUBSTRATUS_K8S_POLL=0.5``, an explicit ``--state file://…``), timed,
   with the CPU seconds each control-plane process and the CLI spent meanwhile (from ``/proc``:
   which component limits the apply), and the API requests the apply made: the CLI writes its
   counters when it exits (``$SUBSTRATUS_K8S_COUNTS``, ``runtimes/kubernetes/counts.py``), per
   step — each applied kind, and the plan-time refresh, conflict check and garbage collection —
   and per verb; printed per applied resource of each kind;
3. the state is read with ``substratus.state.open_backend`` and ``--repeat`` refreshes are run
   in this process for the state's owner (its lineage, workspace ``default``: only its objects
   count), each with a new ``KubernetesRuntime(cloud="kind", kubeconfig=…)`` (so each
   pays for its connection, as a ``plan`` does): API requests in total and per verb
   (``Cluster.requests``, ``Cluster.by_verb``), LIST calls and the objects they returned, the
   observations' statuses (all ``present`` after a successful apply) and the wall time (median,
   min and max of the runs);
4. ``python -m substratus plan --detailed-exitcode`` through the CLI (``--repeat`` times, median),
   which must answer "No changes." (exit 0; with nothing to run, the plan-time check for
   objects the runs would take over, ``KubernetesRuntime.conflicts``, makes no request).

``LIST calls`` are calls of ``Cluster.list`` (one per kind per namespace); ``requests`` are HTTP
requests, one per page of at most 500 objects of a LIST. Nothing is asserted about time; the
script fails only when an apply or a plan fails or the refresh sees drift. The last line says
whether the request count stayed constant across N.

Run from the repository root (needs the control-plane binaries: ``bash scripts/kube-assets.sh``,
or ``SUBSTRATUS_KUBE_ASSETS``; 1,000 Jobs take a few minutes on 2 cores)::

    python bench/refresh.py                              # N = 10, 100, 1000; 5 refreshes each
    python bench/refresh.py --sizes 10,100 --repeat 3
    python bench/refresh.py --kubeconfig ~/.kube/config  # an existing cluster (kind + kwok)
    python bench/refresh.py --keep                       # keep configs, states, plane logs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from substratus.engine.runtime import Observation, Owner
from substratus.engine.statefile import ResourceRecord
from substratus.runtimes.kubernetes import KubernetesRuntime, names
from substratus.runtimes.kubernetes.cluster import Cluster
from substratus.runtimes.kubernetes.counts import ENV as COUNTS_ENV
from substratus.state import open_backend

if TYPE_CHECKING:
    from tests.support.kube import ControlPlane

REPO = Path(__file__).resolve().parents[1]
FILES = 10  # the configuration is split over this many YAML files (at most)
SERVERS_EVERY = 50  # one ModelServer per 50 resources (at least one)
CLI_TIMEOUT = 3600.0
NAMESPACE_TIMEOUT = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Mix:
    datasets: int
    models: int
    servers: int
    notebooks: int

    @property
    def total(self) -> int:
        return self.datasets + self.models + self.servers + self.notebooks

    def describe(self) -> str:
        return f"{self.datasets}d/{self.models}m/{self.servers}s/{self.notebooks}nb"


def mix_for(n: int) -> Mix:
    if n < 4:
        raise ValueError("N must be at least 4 (a Dataset, a Model, a ModelServer, a Notebook)")
    servers = max(1, n // SERVERS_EVERY)
    return Mix(datasets=n - servers - 2, models=1, servers=servers, notebooks=1)


def documents(n: int, artifacts_url: str) -> list[str]:
    """The YAML documents of the ``kind: Project`` and the N resources."""
    mix = mix_for(n)
    docs = [
        "kind: Project\n"
        "spec:\n"
        "  runtime: kubernetes\n"
        "  cloud: kind\n"
        f"  artifacts: {artifacts_url}\n"
    ]
    for i in range(mix.datasets):
        docs.append(
            "kind: Dataset\n"
            f"name: data-{i}\n"
            "spec:\n"
            "  container: {image: 'substratusai/dataset-loader-http:1'}\n"
            f"  loader: {{params: {{urls: 'http://data.example/shard-{i}.jsonl', lines: {i}}}}}\n"
        )
    docs.append(
        "kind: Model\n"
        "name: tuned\n"
        "spec:\n"
        "  container: {image: 'substratusai/model-trainer-huggingface:1'}\n"
        "  trainer:\n"
        "    dataset: data-0\n"
        "    params: {epochs: 1, learningRate: 0.0001}\n"
        "    resources: {gpu: {type: nvidia-l4, count: 1}}\n"
    )
    for i in range(mix.servers):
        docs.append(
            "kind: ModelServer\n"
            f"name: serve-{i}\n"
            "spec:\n"
            "  container: {image: 'substratusai/model-server-basaran:1'}\n"
            "  model: tuned\n"
            "  quantization: {bits: 8}\n"
        )
    docs.append(
        "kind: Notebook\n"
        "name: lab\n"
        "spec:\n"
        "  container: {image: 'substratusai/base:1'}\n"
        "  dataset: data-0\n"
        "  sourceModel: tuned\n"
    )
    return docs


def generate(directory: Path, n: int, artifacts_url: str) -> None:
    """Write ``directory/resources-NN.yaml`` (the Project in the first file)."""
    directory.mkdir(parents=True)
    docs = documents(n, artifacts_url)
    files = min(FILES, len(docs))
    per_file = -(-len(docs) // files)
    for f in range(files):
        chunk = docs[f * per_file : (f + 1) * per_file]
        if chunk:
            header = f"# generated by bench/refresh.py: {n} resources, part {f}\n"
            text = header + "---\n".join(chunk)
            (directory / f"resources-{f:02d}.yaml").write_text(text, encoding="utf-8")


# -- the cluster ------------------------------------------------------------------------------
class CountingCluster(Cluster):
    """A ``Cluster`` that also counts ``list`` calls and the objects they return."""

    def __init__(self, context: str | None = None, kubeconfig: str | None = None) -> None:
        super().__init__(context, kubeconfig)
        self.lists = 0
        self.listed: Counter[str] = Counter()

    def list(
        self,
        kind: str,
        namespace: str,
        selector: str = names.SELECTOR,
        fields: str = "",
        page: int | None = None,
        metadata_only: bool = False,
    ) -> list[dict[str, Any]]:
        items = super().list(kind, namespace, selector, fields, page, metadata_only)
        self.lists += 1
        self.listed[kind] += len(items)
        return items


@dataclass
class Target:
    """Where resources are applied: the control plane started here, or ``--kubeconfig``."""

    kubeconfig: Path
    plane: ControlPlane | None = None
    namespaces: list[str] = field(default_factory=list)

    def new_namespace(self, prefix: str) -> str:
        if self.plane is not None:
            ns = self.plane.new_namespace(prefix)
        else:
            cluster = Cluster(None, str(self.kubeconfig))
            ns = f"{prefix}-{os.getpid()}-{len(self.namespaces) + 1}"
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            cluster.request("POST", "/api/v1/namespaces", None, body, what=f"namespace {ns}")
            deadline = time.monotonic() + NAMESPACE_TIMEOUT
            while cluster.get("ServiceAccount", ns, "default") is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"namespace {ns}: no default ServiceAccount after 30 s")
                time.sleep(0.1)
        self.namespaces.append(ns)
        return ns

    def delete_namespaces(self) -> None:
        cluster = Cluster(None, str(self.kubeconfig))
        for ns in self.namespaces:
            cluster.request("DELETE", f"/api/v1/namespaces/{ns}", what=f"namespace {ns}")

    def processes(self) -> dict[str, int]:
        """Component name → pid (only for a control plane started here)."""
        if self.plane is None:
            return {}
        return {c.name: c.proc.pid for c in self.plane.components}


@contextmanager
def target(kubeconfig: str | None, workdir: Path, keep: bool) -> Iterator[Target]:
    if kubeconfig:
        t = Target(Path(kubeconfig).expanduser())
        try:
            yield t
        finally:
            if not keep:
                t.delete_namespaces()
        return
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))  # for tests.support; appended so PYTHONPATH can override
    from tests.support.kube import ControlPlane

    print("… starting the control plane", file=sys.stderr, flush=True)
    plane = ControlPlane.start(workdir / "plane")
    print(
        f"… control plane up in {plane.startup_seconds:.1f} s at {plane.server}",
        file=sys.stderr,
        flush=True,
    )
    try:
        yield Target(plane.kubeconfig, plane)
    finally:
        plane.stop(remove_workdir=not keep)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


# -- measurements -----------------------------------------------------------------------------
def cli(args: list[str], env: dict[str, str], log: Path) -> tuple[int, float, str]:
    """Run ``python -m substratus ARGS``; exit code, wall seconds, output (also in ``log``)."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "substratus", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    elapsed = time.perf_counter() - start
    text = out.stdout + out.stderr
    log.write_text(text, encoding="utf-8")
    return out.returncode, elapsed, text


def fail(what: str, text: str) -> SystemExit:
    tail = "\n".join(text.splitlines()[-40:])
    return SystemExit(f"{what}:\n{tail}")


def refresh_once(
    records: Mapping[str, ResourceRecord], owner: Owner, artifacts_url: str, kubeconfig: Path
) -> tuple[float, CountingCluster, dict[str, Observation]]:
    cluster = CountingCluster(None, str(kubeconfig))
    runtime = KubernetesRuntime(
        artifacts_url=artifacts_url,
        cloud="kind",
        context=None,
        kubeconfig=str(kubeconfig),
        cluster=cluster,
    )
    start = time.perf_counter()
    observed = runtime.refresh(records, owner)
    return time.perf_counter() - start, cluster, observed


def run_one(
    n: int, where: Target, tmp: Path, repeat: int, parallelism: int, poll: float
) -> dict[str, Any]:
    ns = where.new_namespace(f"bench-refresh-{n}")
    directory = tmp / f"config-{n}"
    artifacts_url = (tmp / f"artifacts-{n}").as_uri()
    state_url = (tmp / f"state-{n}").as_uri()
    generate(directory, n, artifacts_url)
    env = {
        **os.environ,
        "KUBECONFIG": str(where.kubeconfig),
        "SUBSTRATUS_K8S_POLL": str(poll),
        "NO_COLOR": "1",
    }
    common = ["-f", str(directory), "--namespace", ns, "--state", state_url]

    print(f"… N={n}: apply into namespace {ns}", file=sys.stderr, flush=True)
    pids = where.processes()
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cli_before = children_cpu()
    counts_file = tmp / f"apply-counts-{n}.json"
    code, apply_s, text = cli(
        ["apply", "--auto-approve", "--parallelism", str(parallelism), *common],
        {**env, COUNTS_ENV: str(counts_file)},
        tmp / f"apply-{n}.log",
    )
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    cpu["substratus"] = children_cpu() - cli_before
    if code != 0 or "Apply complete!" not in text:
        raise fail(f"apply of N={n} failed (exit {code})", text)

    if not counts_file.is_file():
        raise SystemExit(f"N={n}: the apply wrote no request counts to {counts_file}")
    apply_counts = json.loads(counts_file.read_text())
    state, _ = open_backend(state_url, "default", directory).read()
    if state is None or len(state.resources) != n:
        got = 0 if state is None else len(state.resources)
        raise SystemExit(f"N={n}: the state holds {got} resources, not {n}")

    print(f"… N={n}: {repeat} refreshes, {repeat} plans", file=sys.stderr, flush=True)
    times: list[float] = []
    first: CountingCluster | None = None
    statuses: Counter[str] = Counter()
    for i in range(repeat):
        owner = Owner(state.lineage, "default")
        seconds, cluster, observed = refresh_once(
            state.resources, owner, artifacts_url, where.kubeconfig
        )
        times.append(seconds)
        if i == 0:
            first = cluster
            statuses = Counter(
                o.status if o.pending == "none" else f"{o.status}+{o.pending}"
                for o in observed.values()
            )
            drift = [f"{a}: {o.message}" for a, o in observed.items() if o.status != "present"]
            if drift or len(observed) != n:
                raise SystemExit(f"N={n}: refresh saw {len(observed)} records; drift: {drift[:5]}")
        elif cluster.requests != (first.requests if first else -1):
            print(f"   note: refresh {i + 1} made {cluster.requests} requests", file=sys.stderr)
    assert first is not None

    plans: list[float] = []
    for _ in range(repeat):
        code, seconds, text = cli(
            ["plan", "--detailed-exitcode", *common], env, tmp / f"plan-{n}.log"
        )
        if code != 0 or "No changes." not in text:
            raise fail(f"plan of N={n} is not 'No changes.' (exit {code})", text)
        plans.append(seconds)

    return {
        "n": n,
        "mix": mix_for(n),
        "namespaces": len({r.namespace for r in state.resources.values()}),
        "apply_s": apply_s,
        "apply_counts": apply_counts,
        "cpu": cpu,
        "requests": first.requests,
        "by_verb": dict(first.by_verb),
        "lists": first.lists,
        "listed": dict(first.listed),
        "statuses": statuses,
        "refresh_s": statistics.median(times),
        "refresh_min_s": min(times),
        "refresh_max_s": max(times),
        "plan_s": statistics.median(plans),
    }


# -- output -----------------------------------------------------------------------------------
def _table(head: str, rows: list[str]) -> None:
    print(head)
    print("-" * len(head))
    for row in rows:
        print(row)


SHORT = {
    "etcd": "etcd",
    "kube-apiserver": "apiserver",
    "kube-controller-manager": "ctrl-mgr",
    "kube-scheduler": "scheduler",
    "kwok": "kwok",
    "substratus": "CLI",
}


def print_tables(rows: list[dict[str, Any]], repeat: int, parallelism: int, poll: float) -> None:
    components = sorted({name for r in rows for name in r["cpu"]}, key=_component_order)
    print(f"Apply through the CLI (--parallelism {parallelism}, SUBSTRATUS_K8S_POLL={poll}):")
    _table(
        f"{'N':>5} {'mix d/m/s/nb':>15} {'apply s':>8} {'ms/res':>7}  CPU s: "
        + " ".join(f"{SHORT.get(c, c):>9}" for c in components),
        [
            f"{r['n']:>5} {r['mix'].describe():>15} {r['apply_s']:>8.1f} "
            f"{1000 * r['apply_s'] / r['n']:>7.0f}         "
            + " ".join(f"{r['cpu'].get(c, 0.0):>9.1f}" for c in components)
            for r in rows
        ],
    )
    print(
        "(CPU s: CPU seconds each process used during the apply, CLI = the substratus command; "
        f"{os.cpu_count()} cores)"
    )
    print()
    print_apply_requests(rows)
    print()
    print(f"Refresh in process (KubernetesRuntime.refresh; times: median, min, max of {repeat})")
    print(f"and `substratus plan` through the CLI (median of {repeat}, 'No changes.' each time):")
    kinds = [
        k for k in ("Job", "Deployment", "Service", "Pod") if any(k in r["listed"] for r in rows)
    ]
    kinds += sorted({k for r in rows for k in r["listed"]} - set(kinds))
    _table(
        f"{'N':>5} {'ns':>3} {'LISTs':>5} {'requests':>8} {'by verb':>10}  listed: "
        + " ".join(f"{k:>10}" for k in kinds)
        + f" {'total':>6} {'refresh s':>9} {'min':>6} {'max':>6} {'plan s':>7}  statuses",
        [
            f"{r['n']:>5} {r['namespaces']:>3} {r['lists']:>5} {r['requests']:>8} "
            f"{_verbs(r['by_verb']):>10}          "
            + " ".join(f"{r['listed'].get(k, 0):>10}" for k in kinds)
            + f" {sum(r['listed'].values()):>6} {r['refresh_s']:>9.3f} "
            f"{r['refresh_min_s']:>6.3f} {r['refresh_max_s']:>6.3f} {r['plan_s']:>7.2f}  "
            f"{_statuses(r['statuses'])}"
            for r in rows
        ],
    )
    print()
    print(verdict(rows))


VERBS = ("GET", "POST", "PATCH", "DELETE")


def print_apply_requests(rows: list[dict[str, Any]]) -> None:
    """The apply's requests per step (each applied kind: per resource) and per verb."""
    print("API requests of the apply (the CLI's own count), per run of each step:")
    head = (
        f"{'N':>5} {'step':<20} {'runs':>5} {'requests':>8} {'per run':>8}  per run: "
        + " ".join(f"{v:>6}" for v in VERBS)
    )
    lines: list[str] = []
    for r in rows:
        counts = r["apply_counts"]
        for step, verbs in counts["by_account"].items():
            runs = int(counts["steps"].get(step, 0)) or 1
            total = sum(verbs.values())
            lines.append(
                f"{r['n']:>5} {step:<20} {runs:>5} {total:>8} {total / runs:>8.2f}           "
                + " ".join(f"{verbs.get(v, 0) / runs:>6.2f}" for v in VERBS)
            )
        applied = sum(v for k, v in counts["steps"].items() if k.startswith("apply "))
        total = counts["requests"]
        lines.append(
            f"{r['n']:>5} {'all':<20} {applied:>5} {total:>8} {total / max(applied, 1):>8.2f}"
            "           "
            + " ".join(f"{counts['by_verb'].get(v, 0) / max(applied, 1):>6.2f}" for v in VERBS)
        )
    _table(head, lines)
    print("(runs: how often the step ran — for `apply KIND`, the resources of that kind applied;")
    print(" `all`: every request of the apply command, per applied resource)")


def _component_order(name: str) -> tuple[int, str]:
    order = list(SHORT)
    return (order.index(name) if name in order else len(order), name)


def _verbs(by_verb: dict[str, int]) -> str:
    return " ".join(f"{verb}={count}" for verb, count in sorted(by_verb.items()))


def _statuses(statuses: Counter[str]) -> str:
    return ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))


def verdict(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no sizes measured"
    counts = [r["requests"] for r in rows]
    lists = [r["lists"] for r in rows]
    sizes = ", ".join(str(r["n"]) for r in rows)
    if len(set(counts)) == 1:
        return (
            f"request count CONSTANT across N = {sizes}: {counts[0]} requests "
            f"({lists[0]} LISTs) per refresh"
        )
    why = "; ".join(
        f"N={r['n']}: {r['requests']} requests for {r['lists']} LISTs"
        + (
            f" ({r['requests'] - r['lists']} extra pages of 500)"
            if r["requests"] > r["lists"]
            else ""
        )
        for r in rows
    )
    same_lists = "the LIST count is constant" if len(set(lists)) == 1 else "LISTs grow too"
    return f"request count NOT constant across N = {sizes} ({same_lists}): {why}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000", help="comma-separated N (>= 4)")
    parser.add_argument("--repeat", type=int, default=5, help="refreshes and plans per N")
    parser.add_argument("--parallelism", type=int, default=50, help="apply --parallelism")
    parser.add_argument("--poll", type=float, default=0.5, help="SUBSTRATUS_K8S_POLL for apply")
    parser.add_argument("--kubeconfig", help="use this cluster instead of starting a control plane")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    for n in sizes:
        try:
            mix_for(n)
        except ValueError as exc:
            parser.error(str(exc))
    repeat = max(1, args.repeat)

    tmp = Path(tempfile.mkdtemp(prefix="substratus-bench-refresh-"))
    rows: list[dict[str, Any]] = []
    began = time.perf_counter()
    try:
        with target(args.kubeconfig, tmp, args.keep) as where:
            for n in sizes:
                rows.append(run_one(n, where, tmp, repeat, args.parallelism, args.poll))
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print_tables(rows, repeat, args.parallelism, args.poll)
    print(f"(whole run {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
