"""Prices: the list-price defaults, a team's rates from ``kind: Project`` ``spec.prices``, and
the strict validation of that schema (file:line diagnostics like every other field)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from substratus.engine.config import load_config
from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.prices import (
    CPU_LIST_PRICE,
    GPU_LIST_PRICES,
    MEMORY_LIST_PRICE,
    PRICES_DATE,
    PRICES_SOURCE,
    price_table,
)
from substratus.engine.render import render_plan
from substratus.engine.spec import GPU_TYPES, Prices
from tests.estimate import scenarios as sc

SPOT = "      spot: true\n"  # the falcon trainer's resources.spot
RATES = """\
kind: Project
spec:
  prices:
    source: ACME negotiated rates 2026
    gpu:
      L4: {onDemand: 0.7, spot: 0.28}
    cpuHour: 0.03
    memoryGbHour: 0.004
"""


def test_every_mapped_gpu_type_has_a_list_price() -> None:
    assert set(GPU_LIST_PRICES) == set(GPU_TYPES)
    for price in GPU_LIST_PRICES.values():
        assert 0 < price.spot < price.on_demand
    table = price_table()
    assert (table.source, table.date, table.spot, table.overridden) == (
        PRICES_SOURCE,
        PRICES_DATE,
        False,
        False,
    )
    assert table.cpu_hour == CPU_LIST_PRICE.on_demand
    assert price_table(Prices(spot=True)).gpu["nvidia-l4"] == GPU_LIST_PRICES["nvidia-l4"].spot


def test_overrides_replace_only_what_they_name() -> None:
    prices = Prices.model_validate(
        {"gpu": {"nvidia-h100": 8.5, "a100": {"spot": 1.0}}, "cpuHour": {"onDemand": 0.05}}
    )
    on_demand, spot = price_table(prices), price_table(prices.model_copy(update={"spot": True}))
    assert on_demand.gpu["nvidia-h100"] == spot.gpu["nvidia-h100"] == 8.5  # a number: both
    assert on_demand.gpu["nvidia-a100"] == GPU_LIST_PRICES["nvidia-a100"].on_demand
    assert spot.gpu["nvidia-a100"] == 1.0
    assert on_demand.cpu_hour == 0.05 and spot.cpu_hour == CPU_LIST_PRICE.spot
    assert on_demand.overridden and on_demand.date == PRICES_DATE  # defaults still in use
    assert on_demand.source.startswith("the project's prices (spec.prices)")


def _trained_cost(plan_estimate: dict[str, Any]) -> float:
    rows = {e["address"]: e for e in plan_estimate["resources"]}
    cost = rows["model.falcon-7b-k8s"]["cost"]
    assert isinstance(cost, float)
    return cost


def test_project_rates_price_the_falcon_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = sc.applied(sc.falcon(tmp_path, monkeypatch))
    text = sc.config(h).replace("kind: Project\nspec:\n", RATES, 1)
    text = text.replace(SPOT, "", 1)  # the trainer at the project's rates, not its own spot
    text = text.replace("k8s-instructions.jsonl", "k8s-instructions-v2.jsonl")
    plan = h.plan(text)
    est = plan.estimate_json()
    assert est["prices"]["source"] == "ACME negotiated rates 2026"
    assert est["prices"]["gpu_hour"]["nvidia-l4"] == 0.7 and est["prices"]["spot"] is False
    assert est["prices"]["date"] == PRICES_DATE  # other GPU types keep their list prices
    # 1.5 h * (4 * 0.7 + 2 * 0.03 + 64 * 0.004)
    assert _trained_cost(est) == pytest.approx(1.5 * (2.8 + 0.06 + 0.256), abs=1e-4)
    assert "ACME negotiated rates 2026" in render_plan(plan)

    spot = h.plan(text.replace("    source: ACME", "    spot: true\n    source: ACME"))
    assert spot.estimate_json()["prices"]["spot"] is True
    # 1.5 h * (4 * 0.28 + 2 * 0.03 + 64 * 0.004): a bare number is the spot rate too
    assert _trained_cost(spot.estimate_json()) == pytest.approx(
        1.5 * (1.12 + 0.06 + 0.256), abs=1e-4
    )
    assert spot.estimate_json()["assumptions"][0].startswith(
        "At spot prices (ACME negotiated rates 2026, list prices of 2026-11-28) per hour"
    )


def test_a_resource_on_spot_capacity_is_priced_at_spot_rates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``resources.spot`` (the falcon trainer's) prices that resource at spot rates while the
    project's stay on-demand; without it, it is on-demand and a new version (spot is in the
    digest); a changed ``retries`` alone runs (and costs) nothing."""
    h = sc.applied(sc.falcon(tmp_path, monkeypatch))
    base = sc.config(h)
    assert base.count(SPOT) == 1 and base.count("  retries: 3\n") == 1
    text = base.replace("num_train_epochs: 1", "num_train_epochs: 2")
    est = h.plan(text).estimate_json()
    assert est["prices"]["spot"] is False
    rows = {e["address"]: e for e in est["resources"]}
    trained = rows["model.falcon-7b-k8s"]
    assert trained["spot"] is True and trained["action"] == "replace"
    gpu, cpu, mem = GPU_LIST_PRICES["nvidia-l4"], CPU_LIST_PRICE, MEMORY_LIST_PRICE
    hours = trained["duration_seconds"] / 3600
    assert trained["cost"] == pytest.approx(
        hours * (4 * gpu.spot + 2 * cpu.spot + 64 * mem.spot), abs=1e-4
    )
    assert all(not e["spot"] for a, e in rows.items() if a != "model.falcon-7b-k8s")
    assert "Resources with resources.spot: at spot rates." in est["assumptions"]
    assert "4 × nvidia-l4, 2 vCPU, 64 GB, spot" in render_plan(h.plan(text))

    on_demand = h.plan(base.replace(SPOT, "")).estimate_json()
    [row] = [e for e in on_demand["resources"] if e["address"] == "model.falcon-7b-k8s"]
    assert row["action"] == "replace" and row["spot"] is False
    assert row["cost"] == pytest.approx(
        hours * (4 * gpu.on_demand + 2 * cpu.on_demand + 64 * mem.on_demand), abs=1e-4
    )
    assert "Resources with resources.spot: at spot rates." not in on_demand["assumptions"]

    retried = base.replace("  retries: 3\n", "  retries: 5\n")
    plan = h.plan(retried)
    runs = {c.address for c in plan.runs()}
    assert runs == set()
    [change] = [c for c in plan.changes() if c.address == "model.falcon-7b-k8s"]
    assert change.record_only


@pytest.mark.parametrize(
    ("prices", "message", "line"),
    [
        ("{gpu: {nvidia-v100: 1.0}}", "unknown GPU type 'nvidia-v100'", 4),
        ("{gpu: {L4: 1.0, nvidia-l4: 2.0}}", "priced twice", 4),
        ("{cpuHour: -1}", "greater than or equal to 0", 4),
        ("{cpuHour: {onDemand: 1, reserved: 0.5}}", "reserved", 4),
        ("{memoryHour: 0.004}", "memoryHour", 4),
        ("{spot: maybe}", "spot", 4),
    ],
)
def test_the_prices_schema_is_strict(tmp_path: Path, prices: str, message: str, line: int) -> None:
    (tmp_path / "substratus.yaml").write_text(
        f"kind: Project\nspec:\n  runtime: local\n  prices: {prices}\n"
    )
    with pytest.raises(DiagnosticError) as err:
        load_config([str(tmp_path)])
    text = "\n".join(f"{d.summary} {d.detail} {d.source}" for d in err.value.diagnostics)
    assert message in text and f"substratus.yaml:{line}" in text


def test_max_cost_is_a_strict_lifecycle_field(tmp_path: Path) -> None:
    (tmp_path / "substratus.yaml").write_text(
        "kind: Model\nname: m\nspec:\n  url: file:///w\nlifecycle:\n  maxCost: -5\n"
    )
    with pytest.raises(DiagnosticError) as err:
        load_config([str(tmp_path)])
    assert "lifecycle.maxCost" in str(err.value.diagnostics[0].path)
