"""The plan's estimate: what an apply will consume and roughly cost (the plan JSON's ``estimate``).

``estimate(changes, state, table, ...)`` is pure. What runs:

- jobs: ``create``/``replace`` of builds, Datasets and Models with a loader or a trainer. Each
  requests the canonical spec's ``resources`` (a trainer's ``trainer.resources`` replace the
  Model's; a build is the build Job's 2 vCPU). Its duration is the prior state's ``last_run`` of
  the same address when that run succeeded, else its ``last_success`` (an earlier run that
  succeeded); otherwise (never run, or no run succeeded) it is unknown, and the job is counted
  in ``jobs_unknown`` and not in the cost. A job on ``resources.nodes: N`` requests N times its
  resources for that duration (GPU-hours, cost and the requests' totals all count N nodes).
- services: ``create``/``update``/``replace`` of ModelServers (``replicas`` × resources) and of
  Notebooks that are not suspended, and ``delete`` of either (or a notebook being suspended),
  which frees what it ran. Their ``hourly`` and ``gpus_added`` are the *change* in what runs
  continuously (after − before); ``hourly_after`` is what the resource costs per hour afterwards.
- a resource with ``resources.spot`` (``spot`` true in its row) is priced at spot rates even
  when the project's ``prices.spot`` is false. A job's duration is that of a successful run,
  from its first attempt's start to its end (``spec.retries``: failed attempts included); a
  failed run's is never used.

The document (every key always present but ``nodes``, only on a job spanning more than one node;
money in USD, rounded to 1/10,000)::

    {currency: "USD", prices: {source, date|null, spot, overridden, gpu_hour: {type: rate},
                               cpu_hour, memory_gb_hour},
     resources: [{address, kind, action, role: job|service, gpu: {type, count}|null, cpu,
                  memory_gb, replicas, spot, duration_seconds|null, duration_source:
                  last_run|last_success|unknown|last_run_failed|null, gpu_hours|null, cost|null,
                  hourly|null, hourly_after|null, gpus_added, max_cost|null, nodes?}],
     totals: {jobs, jobs_unknown, gpu_hours, jobs_cost, hourly, gpus_added, gpus_added_by_type,
              gpus, cpu, memory_gb},
     assumptions: [str]}

``check_limits(estimate, max_cost)`` reads only that document (so a saved plan can be checked
later) and returns the errors (a job over its ``lifecycle.maxCost``, a service over it per
hour, the jobs together over ``--max-cost``) and warnings (a cap that cannot be checked because
a duration is unknown). ``checked_estimate(plan, ...)`` does both for a new plan: it returns the
``Estimate`` and the warnings (for the plan's ``estimate`` and ``warnings``) and raises
``DiagnosticError`` on the errors, so a plan over a cap fails before anything runs.
The words are in ``engine.estimate_text``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from substratus.engine import kinds
from substratus.engine.diagnostic import Diagnostic, DiagnosticError
from substratus.engine.estimate_text import assumptions, describe, money, price_label
from substratus.engine.kinds import Compute
from substratus.engine.plan import Action, DriftStatus, Plan, ResourceChange
from substratus.engine.plan_estimate import Estimate
from substratus.engine.prices import CURRENCY, PriceTable, price_table
from substratus.engine.spec import Prices
from substratus.engine.statefile import StateFile

_JOB_ACTIONS = (Action.CREATE, Action.REPLACE)
_SERVICE_ACTIONS = (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE)
_NOTHING = Compute(0, 0, None, 0, "")

Computer = Callable[[str, Mapping[str, Any] | None], Compute | None]


class _Computed:
    """``kinds.compute`` remembered per (kind, spec) for one ``estimate``, which asks it of each
    spec up to five times. A spec is known by its identity; the memo holds the spec itself, so
    that identity is not reused by another spec while the memo lives."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, str], tuple[Mapping[str, Any], Compute | None]] = {}

    def __call__(self, kind: str, spec: Mapping[str, Any] | None) -> Compute | None:
        if spec is None:
            return None
        key = (id(spec), kind)
        known = self._seen.get(key)
        if known is None:
            known = self._seen[key] = (spec, kinds.compute(kind, spec))
        return known[1]


def _replicas(c: Compute | None) -> int:
    """Pods of this shape: a service's replicas, a job's nodes."""
    return c.instances if c is not None else 0


def _hourly(table: PriceTable, c: Compute | None, replicas: int) -> float:
    if c is None or not replicas:
        return 0.0
    rates = table.rates_for(c.spot)  # a resource on spot capacity: at spot rates
    return replicas * rates.hourly(c.gpu_type, c.gpus, float(c.cpu), float(c.memory))


def _entry(change: ResourceChange, c: Compute, replicas: int) -> dict[str, Any]:
    nodes = {"nodes": c.nodes} if c.nodes > 1 else {}
    return {
        "address": change.address,
        "kind": change.kind,
        "action": change.action.value,
        "role": kinds.role(change.kind).value,
        "gpu": {"type": c.gpu_type, "count": c.gpus} if c.gpus else None,
        "cpu": c.cpu,
        "memory_gb": c.memory,
        "replicas": replicas,
        "spot": c.spot,
        "duration_seconds": None,
        "duration_source": None,
        "gpu_hours": None,
        "cost": None,
        "hourly": None,
        "hourly_after": None,
        "gpus_added": 0,
        "max_cost": change.lifecycle.get("maxCost"),
        **nodes,
    }


def _job(
    change: ResourceChange,
    state: StateFile | None,
    table: PriceTable,
    compute: Computer = kinds.compute,
) -> dict[str, Any]:
    res = compute(change.kind, change.after) or _NOTHING
    entry = _entry(change, res, 1)
    rec = state.resources.get(change.address) if state is not None else None
    last = rec.last_run if rec is not None else None
    run = last if last is not None and last.outcome == "succeeded" else None
    source = "last_run"
    if run is None and rec is not None and rec.last_success is not None:
        run, source = (
            rec.last_success,
            "last_success",
        )  # the last run failed; an earlier one did not
    if run is None:
        entry["duration_source"] = "unknown" if last is None else "last_run_failed"
        return entry
    hours = run.seconds / 3600
    entry["duration_seconds"] = run.seconds
    entry["duration_source"] = source
    entry["gpu_hours"] = round(hours * res.gpus * res.nodes, 3)
    entry["cost"] = round(hours * _hourly(table, res, res.nodes), 4)
    return entry


def _service(
    change: ResourceChange, table: PriceTable, missing: set[str], compute: Computer
) -> dict[str, Any]:
    was_running = change.action is not Action.CREATE and change.address not in missing
    before = change.before if was_running else None
    after = change.after if change.action is not Action.DELETE else None
    res_before, res_after = compute(change.kind, before), compute(change.kind, after)
    n_before, n_after = _replicas(res_before), _replicas(res_after)
    shown = res_after if res_after is not None else res_before or _NOTHING
    entry = _entry(change, shown, n_after or n_before)
    hourly_after = _hourly(table, res_after, n_after)
    entry["hourly_after"] = round(hourly_after, 4)
    entry["hourly"] = round(hourly_after - _hourly(table, res_before, n_before), 4)
    entry["gpus_added"] = n_after * _gpus(res_after) - n_before * _gpus(res_before)
    return entry


def _gpus_added(
    changes: list[ResourceChange], missing: set[str], compute: Computer
) -> dict[str, int]:
    """GPUs running after − before, by type, over the services (a type change counts twice)."""
    added: dict[str, int] = {}
    for c in changes:
        if not kinds.is_service_kind(c.kind):
            continue
        running = c.action is not Action.CREATE and c.address not in missing
        after = c.after if c.action is not Action.DELETE else None
        for spec, sign in ((c.before if running else None, -1), (after, 1)):
            found = compute(c.kind, spec)
            n = sign * _gpus(found) * _replicas(found)
            if n:
                key = (found.gpu_type if found else None) or "unspecified"
                added[key] = added.get(key, 0) + n
    return {k: v for k, v in sorted(added.items()) if v}


def _gpus(c: Compute | None) -> int:
    return c.gpus if c is not None else 0


def _runs(change: ResourceChange, compute: Computer) -> bool:
    if change.record_only:  # the record is rewritten; nothing runs or restarts
        return False
    if kinds.is_job_kind(change.kind):
        return change.action in _JOB_ACTIONS and compute(change.kind, change.after) is not None
    if change.action in _SERVICE_ACTIONS:
        specs = (change.before, change.after)
        return any(compute(change.kind, s) is not None for s in specs)
    return False


def estimate(
    changes: Iterable[ResourceChange],
    state: StateFile | None,
    table: PriceTable,
    missing: Iterable[str] = (),
    runtime: str | None = None,
) -> dict[str, Any]:
    """The estimate document of a plan's changes (see the module docstring)."""
    gone = set(missing)
    compute = _Computed()
    running = [c for c in changes if _runs(c, compute)]
    entries = [
        _job(c, state, table, compute)
        if kinds.is_job_kind(c.kind)
        else _service(c, table, gone, compute)
        for c in running
    ]
    return {
        "currency": CURRENCY,
        "prices": table.to_json(),
        "resources": entries,
        "totals": _totals(
            entries, _gpus_added(running, gone, compute), _requests(running, compute)
        ),
        "assumptions": assumptions(entries, table.to_json(), runtime),
    }


def _requests(changes: list[ResourceChange], compute: Computer) -> dict[str, Any]:
    """GPUs by type, vCPUs and GB of memory requested by what runs (jobs, and services as they
    run after the apply: replicas × resources; one that stops requests nothing)."""
    gpus: dict[str, int] = {}
    cpu = memory = 0.0
    for c in changes:
        after = c.after if c.action is not Action.DELETE else None
        res = compute(c.kind, after)
        n = _replicas(res)
        if res is None or not n:
            continue
        if res.gpus:
            key = res.gpu_type or "unspecified"
            gpus[key] = gpus.get(key, 0) + n * res.gpus
        cpu, memory = cpu + n * float(res.cpu), memory + n * float(res.memory)
    whole = [int(x) if float(x).is_integer() else round(x, 3) for x in (cpu, memory)]
    return {"gpus": dict(sorted(gpus.items())), "cpu": whole[0], "memory_gb": whole[1]}


def _totals(
    entries: list[dict[str, Any]], added: dict[str, int], requests: dict[str, Any]
) -> dict[str, Any]:
    jobs = [e for e in entries if e["role"] == "job"]
    services = [e for e in entries if e["role"] == "service"]
    return {
        "jobs": len(jobs),
        "jobs_unknown": sum(e["cost"] is None for e in jobs),
        "gpu_hours": round(sum(e["gpu_hours"] or 0 for e in jobs), 3),
        "jobs_cost": round(sum(e["cost"] or 0 for e in jobs), 4),
        "hourly": round(sum(e["hourly"] for e in services), 4),
        "gpus_added": sum(e["gpus_added"] for e in services),
        "gpus_added_by_type": added,
        **requests,
    }


# -- limits ------------------------------------------------------------------------------------
def check_limits(
    est: Mapping[str, Any], max_cost: float | None = None
) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """(errors, warnings) of the estimate against ``lifecycle.maxCost`` and ``--max-cost``."""
    errors: list[Diagnostic] = []
    warnings: list[Diagnostic] = []
    entries = list(est.get("resources", []))
    prices = price_label(est.get("prices", {}))
    for e in entries:
        cap = e.get("max_cost")
        if cap is None:
            continue
        what = e["cost"] if e["role"] == "job" else e["hourly_after"]
        per = "" if e["role"] == "job" else "/hour"
        if what is None:
            warnings.append(
                Diagnostic.warning(
                    "lifecycle.maxCost cannot be checked",
                    f"No successful run of {e['address']} is recorded, so the cost of this run "
                    f"is unknown and not checked against its lifecycle.maxCost of "
                    f"{money(cap)}. Later plans check it against this run's duration.",
                    address=e["address"],
                )
            )
        elif what > cap:
            errors.append(
                Diagnostic.error(
                    f"{e['address']} would cost more than its lifecycle.maxCost",
                    f"{e['address']} would cost ≈ {money(what)}{per} ({describe(e)}), over its "
                    f"lifecycle.maxCost of {money(cap)}{per}, at {prices}. Nothing was run.\n\n"
                    "Lower its resources (or replicas), set your team's rates or spot: true "
                    "in spec.prices of kind: Project, or raise lifecycle.maxCost.",
                    address=e["address"],
                )
            )
    totals = est.get("totals", {})
    if max_cost is not None and totals.get("jobs_cost", 0) > max_cost:
        top = sorted((e for e in entries if e["cost"]), key=lambda e: -e["cost"])[:3]
        lines = "\n".join(f"  {e['address']}: ≈ {money(e['cost'])} ({describe(e)})" for e in top)
        errors.append(
            Diagnostic.error(
                "The plan would cost more than --max-cost",
                f"The jobs of this plan would cost ≈ {money(totals['jobs_cost'])}, over "
                f"--max-cost {money(max_cost)}, at {prices}. Nothing was run. The jobs that "
                f"cost most:\n\n{lines}\n\nApply fewer of them (--target), lower their "
                "resources, set your team's rates or spot: true in spec.prices of kind: "
                "Project, or raise --max-cost.",
            )
        )
    if max_cost is not None and totals.get("jobs_unknown"):
        n = totals["jobs_unknown"]
        warnings.append(
            Diagnostic.warning(
                "--max-cost checks only the jobs of known duration",
                f"{n} job{'s' if n != 1 else ''} of this plan {'have' if n != 1 else 'has'} no "
                "successful run recorded; their cost is unknown and not counted.",
            )
        )
    return errors, warnings


def checked_estimate(
    plan: Plan,
    state: StateFile | None,
    prices: Prices | None = None,
    max_cost: float | None = None,
) -> tuple[Estimate, list[Diagnostic]]:
    """The estimate of ``plan`` and its warnings; raise ``DiagnosticError`` when it is over a
    cost limit."""
    missing = {d.address for d in plan.drift if d.status is DriftStatus.MISSING}
    document = estimate(
        plan.resource_changes, state, price_table(prices), missing, plan.settings.runtime
    )
    errors, warnings = check_limits(document, max_cost)
    if errors:
        raise DiagnosticError(errors)
    return Estimate.of(document), warnings
