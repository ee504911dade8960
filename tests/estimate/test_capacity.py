"""Plan-time capacity: what nodes offer (Kubernetes labels and quantities) and the check of a
plan's GPU requests against it (``engine.capacity``), with the hook in ``build_plan``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.capacity import GpuRequest, check_capacity, gpu_requests
from substratus.engine.diagnostic import DiagnosticError, Severity
from substratus.engine.failure import Failure
from substratus.engine.runtime import Capacity, NodeOffer
from substratus.runtimes.kubernetes.gpu import node_offer, parse_quantity, product_type
from substratus.runtimes.kubernetes.refresh import Refresher, autoscaler_groups, capacity_of
from tests.support.engine import Harness
from tests.support.fakes import FakeRuntime


def node(name: str, labels: Mapping[str, str] | None = None, **allocatable: str) -> dict[str, Any]:
    """A Node object; ``nvidia_com_gpu="8"`` is allocatable ``nvidia.com/gpu``."""
    resources = {
        "nvidia.com/gpu" if k == "nvidia_com_gpu" else k: v for k, v in allocatable.items()
    }
    return {
        "metadata": {"name": name, "labels": dict(labels or {})},
        "status": {"allocatable": resources},
    }


GKE = "cloud.google.com/gke-accelerator"
GFD = "nvidia.com/gpu.product"
POOL = "cloud.google.com/gke-nodepool"


# -- what a node offers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64", 64.0),
        ("250m", 0.25),
        ("7910m", 7.91),
        ("512Gi", 512 * 2**30),
        ("2Ti", 2 * 2**40),
        ("1G", 1e9),
        ("1e3", 1000.0),
        ("1.5", 1.5),
        ("129900Ki", 129900 * 1024.0),
    ],
)
def test_quantities_are_read_as_kubernetes_writes_them(text: str, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


def test_a_malformed_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity("lots")


def test_a_gke_accelerator_label_maps_back_to_our_type_with_allocatable_resources() -> None:
    offer, unknown = node_offer(
        node("gke-t4", {GKE: "nvidia-tesla-t4"}, cpu="7910m", memory="26Gi", nvidia_com_gpu="1")
    )
    assert offer == NodeOffer("gke-t4", "nvidia-t4", 1, cpu=7.91, memory_gb=26.0)
    assert not unknown
    assert node_offer(node("h", {GKE: "nvidia-h100-80gb"}, nvidia_com_gpu="8"))[0].gpu_type == (
        "nvidia-h100"
    )
    assert node_offer(node("a", {GKE: "nvidia-tesla-a100"}))[0].gpu_type == "nvidia-a100"


def test_a_gke_accelerator_we_have_no_type_for_is_a_known_other_type() -> None:
    offer, unknown = node_offer(node("v100", {GKE: "nvidia-tesla-v100"}, nvidia_com_gpu="4"))
    assert (offer.gpu_type, offer.gpus, unknown) == (None, 4, False)


@pytest.mark.parametrize(
    ("product", "gtype"),
    [
        ("NVIDIA-L4", "nvidia-l4"),
        ("Tesla-T4", "nvidia-t4"),
        ("NVIDIA-A100-SXM4-40GB", "nvidia-a100"),
        ("NVIDIA-A100-SXM4-80GB", "nvidia-a100-80gb"),
        ("NVIDIA-A100-80GB-PCIe", "nvidia-a100-80gb"),
        ("NVIDIA-H100-80GB-HBM3", "nvidia-h100"),
        ("NVIDIA-L40S", None),  # not an L4
        ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", None),  # a MIG slice is not a whole A100
        ("Quadro-RTX-6000", None),
    ],
)
def test_gpu_feature_discovery_products_map_to_our_types(product: str, gtype: str | None) -> None:
    assert product_type(product) == gtype


def test_an_unknown_product_or_no_label_is_a_gpu_of_unknown_type() -> None:
    offer, unknown = node_offer(node("l40s", {GFD: "NVIDIA-L40S"}, nvidia_com_gpu="2"))
    assert (offer.gpu_type, offer.gpus, unknown) == (None, 2, True)
    offer, unknown = node_offer(node("bare", {}, nvidia_com_gpu="1"))
    assert (offer.gpu_type, unknown) == (None, True)
    offer, unknown = node_offer(node("cpu", {}, cpu="4", memory="16Gi"))
    assert (offer.gpu_type, offer.gpus, offer.cpu, offer.memory_gb, unknown) == (
        None,
        0,
        4.0,
        16.0,
        False,
    )
    offer, _ = node_offer(node("gfd", {GFD: "NVIDIA-H100-80GB-HBM3"}, nvidia_com_gpu="8"))
    assert (offer.gpu_type, offer.gpus) == ("nvidia-h100", 8)


def test_capacity_sees_node_auto_provisioning_pools() -> None:
    plain = capacity_of([node("a", {GKE: "nvidia-l4", POOL: "gpu"}, nvidia_com_gpu="1")])
    assert not plain.autoprovisioning and not plain.unknown_types
    nap = capacity_of([node("b", {POOL: "nap-e2-standard-4-1a2b3c"}, cpu="4")])
    assert nap.autoprovisioning
    assert capacity_of([node("c", {}, nvidia_com_gpu="1")]).unknown_types


YAML_STATUS = """\
time: 2025-01-01 00:00:00 +0000 UTC
autoscalerStatus: Running
nodeGroups:
- name: https://www.googleapis.com/compute/v1/projects/p/zones/z/instanceGroups/gke-c-gpu-1-grp
  health:
    status: Healthy
    nodeCounts:
      registered: {total: 0, ready: 0}
    cloudProviderTarget: 0
    minSize: 0
    maxSize: 4
- name: gke-c-default-pool-2-grp
  health:
    nodeCounts:
      registered: {total: 3}
    minSize: 1
    maxSize: 5
- name: frozen
  health:
    nodeCounts: {registered: {total: 0}}
    maxSize: 0
"""
TEXT_STATUS = """\
Cluster-autoscaler status at 2018-07-25 22:59:22 +0000 UTC:
Cluster-wide:
  Health:      Healthy (ready=1 unready=0 notStarted=0 longNotStarted=0 registered=1)
NodeGroups:
  Name:        gpu-pool
  Health:      Healthy (ready=0 unready=0 notStarted=0 longNotStarted=0 registered=0 \
longUnregistered=0 cloudProviderTarget=0 (minSize=0, maxSize=3))
  Name:        nodepool1
  Health:      Healthy (ready=1 unready=0 notStarted=0 longNotStarted=0 registered=1 \
longUnregistered=0 cloudProviderTarget=1 (minSize=1, maxSize=5))
"""


def test_autoscaler_status_node_groups_in_both_formats() -> None:
    groups = autoscaler_groups({"data": {"status": YAML_STATUS}})
    assert groups[0] == (
        "https://www.googleapis.com/compute/v1/projects/p/zones/z/instanceGroups/gke-c-gpu-1-grp",
        0,
        4,
    )
    assert groups[1:] == [("gke-c-default-pool-2-grp", 3, 5), ("frozen", 0, 0)]
    assert autoscaler_groups({"data": {"status": TEXT_STATUS}}) == [
        ("gpu-pool", 0, 3),
        ("nodepool1", 1, 5),
    ]
    assert autoscaler_groups(None) == []


def test_a_node_group_that_scales_from_zero_is_a_template_of_unknown_shape() -> None:
    cap = capacity_of(
        [node("n", {GKE: "nvidia-l4"}, nvidia_com_gpu="1")],
        autoscaler_groups({"data": {"status": YAML_STATUS}}),
    )
    templates = [o for o in cap.offers if o.source == "template"]
    assert templates == [NodeOffer("gke-c-gpu-1-grp", None, 0, source="template")]
    nap = capacity_of([], [("gke-c-nap-n1-standard-4-gpu1-x-grp", 1, 10)])
    assert nap.autoprovisioning


class FakeCluster:
    def __init__(self, nodes: Any, status: Any = None) -> None:
        self.nodes, self.status = nodes, status
        self.calls: list[str] = []

    def request(self, method: str, path: str, **_: Any) -> Any:
        self.calls.append(f"{method} {path}")
        if isinstance(self.nodes, Exception):
            raise self.nodes
        return {"items": self.nodes}

    def get(self, kind: str, namespace: str, name: str) -> Any:
        self.calls.append(f"GET {kind} {namespace}/{name}")
        if isinstance(self.status, Exception):
            raise self.status
        return self.status

    def list(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        raise AssertionError("nothing is recorded: nothing to list")


def test_refresh_lists_the_nodes_once_and_a_403_makes_capacity_unknown() -> None:
    cluster = FakeCluster([node("n", {GKE: "nvidia-l4"}, nvidia_com_gpu="8")])
    refresher = Refresher(cluster)  # type: ignore[arg-type]
    assert refresher.capacity is None
    assert refresher.observe({}) == {}
    assert cluster.calls == [
        "GET /api/v1/nodes",
        "GET ConfigMap kube-system/cluster-autoscaler-status",
    ]
    assert refresher.capacity == Capacity((NodeOffer("n", "nvidia-l4", 8),))

    forbidden = Failure('permission denied: nodes is forbidden: User "u"', "", status=403)
    refresher = Refresher(FakeCluster(forbidden))  # type: ignore[arg-type]
    refresher.observe({})
    assert refresher.capacity is not None
    assert "listing the cluster's nodes is not allowed" in refresher.capacity.unknown_reason
    assert "examples/kubernetes/rbac.yaml" in refresher.capacity.unknown_reason

    unreadable = FakeCluster([], Failure("permission denied: configmaps", "", status=403))
    refresher = Refresher(unreadable)  # type: ignore[arg-type]
    refresher.observe({})
    assert refresher.capacity == Capacity()  # the autoscaler is just not seen
    with pytest.raises(Failure):  # anything but a 403 still fails the plan
        Refresher(FakeCluster(Failure("unreachable", ""))).observe({})  # type: ignore[arg-type]


# -- the check ----------------------------------------------------------------------------------

CLUSTER = Capacity(
    (
        NodeOffer("kwok-gpu-0", "nvidia-l4", 8),
        NodeOffer("t4-a", "nvidia-t4", 1),
        NodeOffer("t4-b", "nvidia-t4", 1),
        NodeOffer("cpu-0", None, 0, cpu=8),
    )
)


def req(gtype: str | None, count: int = 1) -> GpuRequest:
    return GpuRequest("model.x", "spec.trainer.resources.gpu", gtype, count)


def test_a_request_that_fits_has_no_diagnostic() -> None:
    assert check_capacity([req("nvidia-l4", 8), req("nvidia-t4", 1), req(None, 8)], CLUSTER) == []


def test_a_type_no_node_offers_is_a_warning_listing_what_is_offered() -> None:
    [d] = check_capacity([req("nvidia-h100", 4)], CLUSTER)
    assert d.severity is Severity.WARNING
    assert d.summary == (
        "model.x asks for 4 × nvidia-h100, but no node offers nvidia-h100 (the cluster offers: "
        "8 × nvidia-l4 on kwok-gpu-0, 1 × nvidia-t4 on t4-a and 1 more)"
    )
    assert (d.address, d.path) == ("model.x", "spec.trainer.resources.gpu")
    assert "scaled to zero" in d.detail


def test_more_gpus_of_a_type_than_one_node_has_is_a_count_warning() -> None:
    [d] = check_capacity([req("nvidia-t4", 4)], CLUSTER)
    assert d.summary.startswith(
        "model.x asks for 4 × nvidia-t4 on one node, but no node has more than 1 × nvidia-t4"
    )
    assert "ask for at most 1 × nvidia-t4" in d.detail
    [d] = check_capacity([req(None, 16)], CLUSTER)
    assert d.summary.startswith("model.x asks for 16 GPUs on one node, but no node has more than 8")


def test_a_cluster_without_gpus_says_so() -> None:
    [d] = check_capacity([req(None, 1)], Capacity((NodeOffer("cpu-0", None, 0),)))
    assert d.summary == (
        "model.x asks for 1 GPU, but no node offers GPUs (the cluster has 1 node, none with GPUs)"
    )
    [d] = check_capacity([req("nvidia-l4")], Capacity())
    assert "no node offers nvidia-l4 (the cluster has 0 nodes, none with GPUs)" in d.summary


def test_gpus_of_unknown_type_rule_out_no_type_but_still_a_count() -> None:
    unknown = Capacity((*CLUSTER.offers, NodeOffer("bare", None, 2)), unknown_types=True)
    assert check_capacity([req("nvidia-h100", 2)], unknown) == []
    assert check_capacity([req("nvidia-t4", 2)], unknown) == []  # "bare" may be T4s
    [d] = check_capacity([req("nvidia-t4", 4)], unknown)
    assert "no node has more than 1 × nvidia-t4" in d.summary
    assert "2 × GPU of unknown type on bare" in d.summary


def test_autoprovisioning_or_a_template_of_unknown_shape_rules_out_nothing() -> None:
    nap = Capacity(CLUSTER.offers, autoprovisioning=True)
    template = Capacity((*CLUSTER.offers, NodeOffer("gpu-pool", None, 0, source="template")))
    for cap in (nap, template):
        assert (
            check_capacity([req("nvidia-h100", 8), req("nvidia-t4", 4), req(None, 64)], cap) == []
        )
    known = Capacity((*CLUSTER.offers, NodeOffer("a3", "nvidia-h100", 8, source="template")))
    assert check_capacity([req("nvidia-h100", 8)], known) == []
    [d] = check_capacity([req("nvidia-a100")], known)
    assert "8 × nvidia-h100 on autoscaler template a3" in d.summary


def test_strict_makes_the_findings_errors() -> None:
    [d] = check_capacity([req("nvidia-h100", 4)], CLUSTER, strict=True)
    assert d.severity is Severity.ERROR


def test_many_offers_are_summarised() -> None:
    many = Capacity(tuple(NodeOffer(f"n{i}", "nvidia-l4", i) for i in range(1, 10)))
    [d] = check_capacity([req("nvidia-h100")], many)
    assert "(the cluster offers: 9 × nvidia-l4 on n9, 8 × nvidia-l4 on n8" in d.summary
    assert d.summary.endswith("4 × nvidia-l4 on n4, and 3 more)")


# -- the plan: which workloads are checked, and the hook in build_plan ---------------------------

CONFIG = """\
kind: Dataset
name: d
spec:
  container: {image: x}
  resources: {gpu: {type: nvidia-t4, count: 1}}
---
kind: Model
name: m
spec:
  container: {image: x}
  resources: {gpu: {type: nvidia-l4, count: 1}}
  trainer:
    dataset: d
    resources: {gpu: {type: h100, count: 4}}
---
kind: Model
name: hub
spec: {url: "gs://b/m", resources: {gpu: {count: 8}}}
---
kind: ModelServer
name: s
spec:
  container: {image: x}
  model: m
  replicas: 0
  resources: {gpu: {count: 9}}
---
kind: Notebook
name: lab
spec:
  container: {image: x}
  suspend: true
  resources: {gpu: {type: nvidia-a100}}
---
kind: Notebook
name: cpu
spec: {container: {image: x}}
"""


class SizedRuntime(FakeRuntime):
    def __init__(self, capacity: Capacity | None) -> None:
        super().__init__()
        self._capacity = capacity

    def capacity(self) -> Capacity | None:
        return self._capacity


def harness(tmp_path: Path, capacity: Capacity | None) -> Harness:
    h = Harness(tmp_path)
    h.runtime = SizedRuntime(capacity)
    return h


def test_only_workloads_the_plan_starts_are_checked(tmp_path: Path) -> None:
    plan = harness(tmp_path, None).plan(CONFIG)
    assert gpu_requests(plan) == [
        GpuRequest("dataset.d", "spec.resources.gpu", "nvidia-t4", 1),
        GpuRequest("model.m", "spec.trainer.resources.gpu", "nvidia-h100", 4),
    ]  # not: a url-only model, a server with 0 replicas, a suspended notebook, no GPU


def test_build_plan_warns_with_file_and_line(tmp_path: Path) -> None:
    h = harness(tmp_path, CLUSTER)
    plan = h.plan(CONFIG)
    [d] = [w for w in plan.warnings if "asks for" in w.summary]
    assert d.summary.startswith("model.m asks for 4 × nvidia-h100, but no node offers")
    assert d.source is not None and d.source.line == 14  # the trainer's `resources:` line
    assert d.source.file.endswith("substratus.yaml")
    h.apply(plan)
    assert [w for w in h.plan().warnings if "asks for" in w.summary] == []  # nothing runs


def test_strict_fails_the_plan_before_anything_runs(tmp_path: Path) -> None:
    h = harness(tmp_path, CLUSTER)
    with pytest.raises(DiagnosticError) as info:
        h.plan(CONFIG, strict=True)
    [d] = info.value.diagnostics
    assert d.is_error and "no node offers nvidia-h100" in d.summary
    assert h.runtime.calls == []


def test_no_refresh_or_no_capacity_checks_nothing(tmp_path: Path) -> None:
    assert harness(tmp_path, CLUSTER).plan(CONFIG, refresh=False, strict=True).warnings == ()
    assert Harness(tmp_path).plan(CONFIG, strict=True).warnings == ()  # runtime without it


def test_unknown_capacity_is_one_note_and_only_when_gpus_are_asked_for(tmp_path: Path) -> None:
    unknown = Capacity(unknown_reason="substratus may not list the cluster's nodes (403)")
    h = harness(tmp_path, unknown)
    [note] = h.plan(CONFIG, strict=True).warnings
    assert not note.is_error
    assert note.summary == "GPU types and counts were not checked against the cluster"
    assert note.detail == "Substratus may not list the cluster's nodes (403)."
    assert h.plan(CONFIG.split("---")[-1]).warnings == ()  # no GPU asked for
