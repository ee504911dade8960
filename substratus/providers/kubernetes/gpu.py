"""Compute resources, GPUs and scheduling per cloud (DESIGN §8, the original operator's rules).

``container_resources(res)``: requests ``cpu``, ``memory`` (GB → ``Gi``) and
``ephemeral-storage`` (``disk``); the memory request is also the limit (so an over-use is an
``OOMKilled`` the user can see, not a node eviction); a GPU is ``nvidia.com/gpu`` in requests and
limits. ``scheduling(res, cloud)``: the node selector and tolerations of a GPU workload —
``cloud.google.com/gke-accelerator`` on GCP (plus the spot toleration that lets GKE node
auto-provisioning create spot GPU nodes), no selector on kind / generic clusters; every GPU
workload tolerates the usual ``nvidia.com/gpu`` taint. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
GKE_ACCELERATOR = "cloud.google.com/gke-accelerator"
GKE_ACCELERATORS = {
    "nvidia-t4": "nvidia-tesla-t4",
    "nvidia-l4": "nvidia-l4",
    "nvidia-a100": "nvidia-tesla-a100",
    "nvidia-a100-80gb": "nvidia-a100-80gb",
    "nvidia-h100": "nvidia-h100-80gb",
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


def scheduling(res: Mapping[str, Any] | None, cloud: str) -> dict[str, Any]:
    """``nodeSelector`` and ``tolerations`` for a pod spec (empty without a GPU)."""
    gpu = gpu_of(res)
    if gpu is None:
        return {}
    tolerations: list[dict[str, Any]] = [
        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    ]
    out: dict[str, Any] = {}
    if cloud == "gcp":
        gtype = gpu.get("type")
        if gtype:
            out["nodeSelector"] = {GKE_ACCELERATOR: GKE_ACCELERATORS[str(gtype)]}
        tolerations.append(
            {
                "key": "cloud.google.com/gke-spot",
                "operator": "Equal",
                "value": "true",
                "effect": "NoSchedule",
            }
        )
    out["tolerations"] = tolerations
    return out


def is_gpu_job(res: Mapping[str, Any] | None) -> bool:
    return gpu_of(res) is not None
