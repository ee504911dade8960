"""Prices for the plan's estimate: default list prices, and a team's rates over them.

THE DEFAULTS BELOW ARE PUBLIC LIST PRICES, ROUNDED, AS OF ``PRICES_DATE``: Google Cloud,
region us-central1 (Iowa), USD per hour, without sustained-use or committed-use discounts and
without taxes. GPUs are priced per GPU-hour (for the A3 machines that carry H100s, the machine's
price divided by its 8 GPUs); vCPUs and memory at the general-purpose N2 rates. Spot prices
change often (up to monthly); the spot figures are typical values, not a quote. They are here so
that a plan can say "≈ $40 for the jobs" at all. A team that pays other rates (negotiated
discounts, another cloud or region, an on-premises chargeback) overrides them in
``kind: Project`` ``spec.prices`` (``engine.spec.Prices``):

    kind: Project
    spec:
      prices:
        source: ACME negotiated GCP rates 2026   # shown in the plan instead of the default label
        spot: false                              # estimate at spot rates instead of on-demand
        gpu:
          nvidia-l4: {onDemand: 0.70, spot: 0.28}
          nvidia-h100: 8.50                      # one number: on-demand and spot alike
        cpuHour: 0.03                            # per vCPU-hour
        memoryGbHour: {onDemand: 0.004, spot: 0.0012}   # per GB of memory per hour

``price_table(prices)`` resolves that into the ``PriceTable`` one estimate uses (one mode, on-demand
or spot). Pure data; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from substratus.engine.spec import GPU_TYPES, Prices, Rate

PRICES_DATE = "2026-11-28"
PRICES_SOURCE = "Google Cloud list prices, us-central1"
CURRENCY = "USD"


@dataclass(frozen=True)
class ListPrice:
    on_demand: float
    spot: float


# USD per GPU-hour (the accelerator alone; its machine's vCPUs and memory are priced below).
GPU_LIST_PRICES: dict[str, ListPrice] = {
    "nvidia-t4": ListPrice(0.35, 0.14),
    "nvidia-l4": ListPrice(0.56, 0.22),
    "nvidia-a100": ListPrice(2.93, 1.17),  # A100 40 GB (a2-highgpu)
    "nvidia-a100-80gb": ListPrice(3.93, 1.57),  # A100 80 GB (a2-ultragpu)
    "nvidia-h100": ListPrice(11.06, 3.69),  # H100 80 GB (a3-highgpu-8g / 8)
}
CPU_LIST_PRICE = ListPrice(0.0316, 0.0076)  # USD per vCPU-hour (N2)
MEMORY_LIST_PRICE = ListPrice(0.00424, 0.00102)  # USD per GB-hour (N2)


@dataclass(frozen=True)
class PriceTable:
    """The rates of one estimate: USD per hour of each GPU type, vCPU and GB of memory."""

    gpu: dict[str, float]
    cpu_hour: float
    memory_gb_hour: float
    spot: bool
    source: str
    date: str | None  # the list prices' date; None when every rate was overridden
    overridden: bool  # whether any rate comes from ``spec.prices``
    # The same prices at spot rates, for a resource with ``resources.spot`` when the project
    # estimates on-demand (None: this table is at spot rates already).
    at_spot: PriceTable | None = None

    def rates_for(self, spot: bool) -> PriceTable:
        """The table a resource is priced at: this one, or with ``spot`` its spot rates."""
        return self.at_spot if spot and self.at_spot is not None else self

    def hourly(self, gpu_type: str | None, gpus: int, cpu: float, memory_gb: float) -> float:
        """USD per hour of one instance with that many GPUs, vCPUs and GB of memory."""
        gpu_rate = self.gpu.get(gpu_type, 0.0) if gpu_type else 0.0
        return gpus * gpu_rate + cpu * self.cpu_hour + memory_gb * self.memory_gb_hour

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "date": self.date,
            "spot": self.spot,
            "overridden": self.overridden,
            "gpu_hour": dict(self.gpu),
            "cpu_hour": self.cpu_hour,
            "memory_gb_hour": self.memory_gb_hour,
        }


def _pick(override: Rate | None, default: ListPrice, spot: bool) -> tuple[float, bool]:
    value = None
    if override is not None:
        value = override.spot if spot else override.onDemand
    if value is None:
        return (default.spot if spot else default.on_demand), False
    return float(value), True


def price_table(prices: Prices | None = None) -> PriceTable:
    """The list prices with ``prices`` (a Project's ``spec.prices``) applied."""
    p = prices or Prices()
    used_override: list[bool] = []
    gpu: dict[str, float] = {}
    for gtype in GPU_TYPES:
        gpu[gtype], o = _pick(p.gpu.get(gtype), GPU_LIST_PRICES[gtype], p.spot)
        used_override.append(o)
    cpu, o_cpu = _pick(p.cpuHour, CPU_LIST_PRICE, p.spot)
    mem, o_mem = _pick(p.memoryGbHour, MEMORY_LIST_PRICE, p.spot)
    used_override += [o_cpu, o_mem]
    overridden = any(used_override)
    if p.source:
        source = p.source
    elif overridden:
        source = "the project's prices (spec.prices) over " + PRICES_SOURCE
    else:
        source = PRICES_SOURCE
    return PriceTable(
        gpu=gpu,
        cpu_hour=cpu,
        memory_gb_hour=mem,
        spot=p.spot,
        source=source,
        date=None if all(used_override) else PRICES_DATE,
        overridden=overridden,
        at_spot=None if p.spot else price_table(p.model_copy(update={"spot": True})),
    )
