"""Compute resources, GPUs and scheduling per cloud (DESIGN §8, the original operator's rules).

``container_resources(res)``: requests ``cpu``, ``memory`` (GB → ``Gi``) and
``ephemeral-storage`` (``disk``); the memory request is also the limit (so an over-use is an
``OOMKilled`` the user can see, not a node eviction); a GPU is ``nvidia.com/gpu`` in requests and
limits. ``scheduling(res, cloud, spot)``: the node selector and tolerations of a GPU workload —
``cloud.google.com/gke-accelerator`` on GCP (plus the spot toleration that lets GKE node
auto-provisioning create spot GPU nodes), no selector on kind / generic clusters; every GPU
workload tolerates the usual ``nvidia.com/gpu`` taint. With ``resources.spot`` (on any cloud,
GPU or not) the pod runs only on spot nodes: node selector ``cloud.google.com/gke-spot:
"true"`` and the toleration of GKE's spot taint (the original operator's form; a cluster of
another cloud labels its spot nodes the same way to use it).

What a node offers (``node_offer``, for plan-time capacity checks): its GPU type from GKE's
``cloud.google.com/gke-accelerator`` label (``GKE_ACCELERATORS`` read backwards; a GKE
accelerator we have no type for is a known, other type), else from the NVIDIA GPU feature
discovery label ``nvidia.com/gpu.product`` (``NVIDIA-L4``, ``NVIDIA-A100-SXM4-80GB``,
``NVIDIA-H100-80GB-HBM3``…; a product we cannot map, MIG slices included, is a GPU of unknown
type), else unknown; its GPUs, cpu and memory from ``status.allocatable`` (Kubernetes quantities,
``parse_quantity``; memory in GiB, the unit ``gb_quantity`` writes). Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from substratus.engine.runtime import NodeOffer

GPU_RESOURCE = "nvidia.com/gpu"
GKE_ACCELERATOR = "cloud.google.com/gke-accelerator"
GKE_SPOT = "cloud.google.com/gke-spot"  # label (and taint) of GKE's spot nodes
GKE_ACCELERATORS = {
    "nvidia-t4": "nvidia-tesla-t4",
    "nvidia-l4": "nvidia-l4",
    "nvidia-a100": "nvidia-tesla-a100",
    "nvidia-a100-80gb": "nvidia-a100-80gb",
    "nvidia-h100": "nvidia-h100-80gb",
}
GPU_TYPE_OF_GKE = {label: gtype for gtype, label in GKE_ACCELERATORS.items()}
GFD_PRODUCT = "nvidia.com/gpu.product"
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$"
)
_SUFFIXES = {
    **{s: 1024.0**i for i, s in enumerate(("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: 1000.0**i for i, s in enumerate(("", "k", "M", "G", "T", "P", "E"))},
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
}


def cpu_quantity(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{round(value * 1000)}m"


def gb_quantity(value: float) -> str:
    return f"{int(value)}Gi" if float(value).is_integer() else f"{round(value * 1024)}Mi"


def gpu_of(res: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    gpu = (res or {}).get("gpu")
    return gpu if isinstance(gpu, Mapping) and int(gpu.get("count") or 0) > 0 else None


def container_resources(res: Mapping[str, Any] | None) -> dict[str, Any]:
    if not res:
        return {}
    requests = {
        "cpu": cpu_quantity(float(res.get("cpu", 2))),
        "memory": gb_quantity(float(res.get("memory", 10))),
        "ephemeral-storage": gb_quantity(float(res.get("disk", 10))),
    }
    limits = {"memory": requests["memory"]}
    gpu = gpu_of(res)
    if gpu is not None:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(int(gpu["count"]))
    return {"requests": requests, "limits": limits}


SPOT_TOLERATION = {"key": GKE_SPOT, "operator": "Equal", "value": "true", "effect": "NoSchedule"}


def scheduling(res: Mapping[str, Any] | None, cloud: str, spot: bool = False) -> dict[str, Any]:
    """``nodeSelector`` and ``tolerations`` for a pod spec (empty without a GPU or ``spot``)."""
    gpu = gpu_of(res)
    selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    if gpu is not None:
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
        if cloud == "gcp":
            gtype = gpu.get("type")
            if gtype:
                selector[GKE_ACCELERATOR] = GKE_ACCELERATORS[str(gtype)]
            tolerations.append(dict(SPOT_TOLERATION))
    if spot:  # only spot nodes, on any cloud: GKE labels and taints them so
        selector[GKE_SPOT] = "true"
        if SPOT_TOLERATION not in tolerations:
            tolerations.append(dict(SPOT_TOLERATION))
    out: dict[str, Any] = {"nodeSelector": selector} if selector else {}
    if tolerations:
        out["tolerations"] = tolerations
    return out


def is_gpu_job(res: Mapping[str, Any] | None) -> bool:
    return gpu_of(res) is not None


def parse_quantity(text: object) -> float:
    """A Kubernetes quantity (``250m``, ``64``, ``512Gi``, ``1e3``, ``2T``…) as a number;
    ``ValueError`` when it is not one."""
    m = _QUANTITY.match(str(text).strip())
    if m is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number, exponent, suffix = m.groups()
    scale = 10.0 ** int(exponent) if exponent else _SUFFIXES[suffix or ""]
    return float(number) * scale


def _quantity(resources: Mapping[str, Any], name: str) -> float:
    try:
        return parse_quantity(resources.get(name, 0))
    except ValueError:
        return 0.0


def product_type(product: str) -> str | None:
    """Our GPU type of a GPU feature discovery product name, or None (not one of ours, or a MIG
    slice, or a name we cannot read)."""
    tokens = {t for t in re.split(r"[-_\s]+", product.upper()) if t}
    if any(t.startswith("MIG") for t in tokens):
        return None
    if "H100" in tokens:
        return "nvidia-h100"
    if "A100" in tokens:
        return "nvidia-a100-80gb" if "80GB" in tokens else "nvidia-a100"
    if "L4" in tokens:
        return "nvidia-l4"
    if "T4" in tokens:
        return "nvidia-t4"
    return None


def node_offer(node: Mapping[str, Any]) -> tuple[NodeOffer, bool]:
    """What a Node object offers, and whether it has GPUs of a type that cannot be told."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    status = node.get("status") or {}
    allocatable = status.get("allocatable") or status.get("capacity") or {}
    gpus = int(_quantity(allocatable, GPU_RESOURCE))
    accelerator, product = labels.get(GKE_ACCELERATOR), labels.get(GFD_PRODUCT)
    if accelerator:
        gtype, unknown = GPU_TYPE_OF_GKE.get(str(accelerator)), False
    elif product:
        gtype = product_type(str(product))
        unknown = gtype is None and gpus > 0
    else:
        gtype, unknown = None, gpus > 0
    offer = NodeOffer(
        name=str((node.get("metadata") or {}).get("name") or "?"),
        gpu_type=gtype,
        gpus=gpus,
        cpu=_quantity(allocatable, "cpu"),
        memory_gb=_quantity(allocatable, "memory") / 2**30,
        spot=str(labels.get(GKE_SPOT, "")).lower() == "true",
    )
    return offer, unknown
