"""Ownership of cluster objects (``ownership``, ``guard``, ``cleanup``, ``conflicts``,
``notebooks.token``, ``servers.rollout``): the rules offline, and the guarded writes and deletes
against the real control plane — including the moment between substratus checking an object and
acting on it, when someone replaces it (simulated by a ``Cluster`` that lets a "colleague" swap
the object right after substratus read it), and objects made before objects carried identities,
which only the state recording them may claim."""

from __future__ import annotations

from typing import Any

import pytest

from substratus.engine.failure import Failure
from substratus.engine.plan import Action
from substratus.engine.runtime import DeleteRequest, Owner, PlannedRun, RunContext
from substratus.runtimes.kubernetes import (
    cleanup,
    conflicts,
    guard,
    manifests,
    names,
    notebooks,
    servers,
)
from substratus.runtimes.kubernetes.cluster import Cluster
from substratus.runtimes.kubernetes.manifests import Workload
from substratus.runtimes.kubernetes.ownership import is_mine, whose
from substratus.runtimes.kubernetes.volumes import Store
from substratus.runtimes.kubernetes.waits import Timing
from tests.support.kube import ControlPlane
from tests.support.waiting import wait_for

LINEAGE = "3f2b8c1e-7d4a-4b9e-8f10-2a6c5d9e0b11"
OURS = Owner(LINEAGE, "default")
TIMING = Timing(poll=0.1, delete=20)


def server(ns: str, owner: Owner = OURS, name: str = "api") -> Workload:
    return Workload(
        address="modelserver.api",
        kind="modelserver",
        namespace=ns,
        name=name,
        digest="sha256:" + "ab" * 32,
        image="server:1",
        cloud="kind",
        owner=owner,
        version="abababababababab-0a1b2c",
    )


# -- the rules, offline ------------------------------------------------------------------------


def _labelled(labels: dict[str, str], annotations: dict[str, str] | None = None) -> Any:
    return {"metadata": {"labels": labels, "annotations": annotations or {}}}


def test_whose_reads_the_identity_in_the_labels() -> None:
    ours = manifests.params_secret(server("ns"), "api-server-params")
    assert whose(ours, OURS) == "ours" and is_mine(ours, OURS)
    assert whose(ours, Owner(LINEAGE, "staging")) == "other"  # another workspace
    assert whose(ours, Owner("another-lineage", "default")) == "other"
    assert whose(ours, Owner()) == "other"  # no state yet: nothing is ours
    assert whose(_labelled({"app": "theirs"}), OURS) == "foreign"
    older = _labelled({names.MANAGED_BY: "substratus", names.ADDRESS: "modelserver.api"})
    assert whose(older, OURS) == "unclaimed"
    assert not is_mine(older, OURS)  # made before identities: only a record claims it
    assert is_mine(older, OURS, claim="team-a/modelserver.api")
    assert not is_mine(older, OURS, claim="modelserver.other")


def test_workspaces_get_names_and_label_values_apart() -> None:
    assert names.server_name("api") == "api-server"
    assert names.server_name("api", "staging") == "api-staging-server"
    odd = names.server_name("api", "Team_B.x")
    assert odd.startswith("api-team-b-x-") and odd != names.server_name("api", "team-b-x")
    long = names.notebook_name("n" * 50, "w" * 40)
    assert len(long) <= 63 and long != names.notebook_name("n" * 50, "w" * 41)
    assert names.label_value("staging") == "staging"
    odd_value = names.label_value("staging.")  # a valid workspace name, not a label value
    assert odd_value != "staging." and len(odd_value) <= 63 and odd_value[-1].isalnum()
    w = server("ns", Owner(LINEAGE, "staging"))
    selector = manifests.service(w, "api-staging-server", 8080, "http-serve")["spec"]["selector"]
    assert selector[names.WORKSPACE] == "staging" and selector[names.LINEAGE] == LINEAGE


# -- against the control plane -----------------------------------------------------------------


@pytest.fixture
def cluster(kube_cluster: ControlPlane) -> Cluster:
    return Cluster(None, str(kube_cluster.kubeconfig))


@pytest.fixture
def ns(kube_cluster: ControlPlane, request: pytest.FixtureRequest) -> str:
    return kube_cluster.new_namespace(request.node.name.removeprefix("test_")[:30])


class Swapping(Cluster):
    """After substratus first reads ``kind`` (any GET of it), a colleague deletes the object and
    makes a copy of it under the same name — labels, identity and all — before substratus acts
    on what it read."""

    def __init__(self, plane: ControlPlane, kind: str) -> None:
        super().__init__(None, str(plane.kubeconfig))
        self.plane, self.kind = plane, kind
        self.copy: dict[str, Any] | None = None

    def get(
        self, kind: str, namespace: str, name: str, metadata_only: bool = False
    ) -> dict[str, Any] | None:
        found = super().get(kind, namespace, name, metadata_only)
        if kind == self.kind and found is not None and self.copy is None:
            full = super().get(kind, namespace, name) or {}
            assert self.delete(kind, namespace, name) == "deleted"
            wait_for(lambda: super(Swapping, self).get(kind, namespace, name) is None, "gone")
            meta = full["metadata"]
            copy = {
                "apiVersion": full["apiVersion"],
                "kind": kind,
                "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations")},
                **{k: v for k, v in full.items() if k in ("spec", "data")},
            }
            self.copy = self.create(copy)
        return found


def legacy_configmap(w: Workload, name: str) -> dict[str, Any]:
    """The params ConfigMap versions of substratus before params moved to Secrets made."""
    data = {"params.json": "{}\n"}
    meta = manifests.metadata(w, name)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def _make(cluster: Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    made = cluster.apply_new(obj)
    assert made is not None
    return made


def test_create_only_and_uid_guarded_writes(cluster: Cluster, ns: str) -> None:
    cm = legacy_configmap(server(ns), "api-server-params")
    made = _make(cluster, cm)
    again = {**cm, "data": {"params.json": '{"a": 1}\n'}}
    assert cluster.apply_new(again) is None  # the name is taken: nothing written
    assert cluster.get("ConfigMap", ns, "api-server-params") == made
    uid = made["metadata"]["uid"]
    assert cluster.apply(again, uid)["data"] == {"params.json": '{"a": 1}\n'}
    with pytest.raises(Failure, match="deleted or replaced while substratus applied it"):
        cluster.apply(again, "00000000-0000-0000-0000-000000000000")
    merged = cluster.merge("ConfigMap", ns, "api-server-params", uid, {"data": {"b": "2"}})
    assert merged["data"] == {"params.json": '{"a": 1}\n', "b": "2"}
    with pytest.raises(Failure, match="deleted or replaced while substratus changed it"):
        cluster.merge("ConfigMap", ns, "api-server-params", "0" * 8, {"data": {"b": "3"}})
    with pytest.raises(Failure, match="deleted or replaced while substratus changed it"):
        cluster.merge("ConfigMap", ns, "nothing-here", uid, {"data": {"b": "3"}})
    assert cluster.delete("ConfigMap", ns, "api-server-params", uid="0" * 8) == "replaced"
    assert cluster.get("ConfigMap", ns, "api-server-params") is not None
    assert cluster.delete("ConfigMap", ns, "api-server-params", uid=uid) == "deleted"
    assert cluster.delete("ConfigMap", ns, "api-server-params", uid=uid) == "gone"


def test_a_write_onto_an_object_replaced_after_its_check_is_refused(
    kube_cluster: ControlPlane, ns: str
) -> None:
    plain = Cluster(None, str(kube_cluster.kubeconfig))
    cm = legacy_configmap(server(ns), "api-server-params")
    _make(plain, cm)
    swapping = Swapping(kube_cluster, "ConfigMap")
    changed = {**cm, "data": {"params.json": '{"changed": true}\n'}}
    with pytest.raises(Failure, match="deleted or replaced while substratus applied it"):
        guard.ensure(swapping, [changed], OURS, "modelserver.api", recorded=True)
    assert swapping.copy is not None
    live = plain.get("ConfigMap", ns, "api-server-params")
    assert live is not None and live["metadata"]["uid"] == swapping.copy["metadata"]["uid"]
    assert live["data"] == cm["data"]  # the copy was not written


def test_destroy_never_deletes_a_replacement_made_after_its_check(
    kube_cluster: ControlPlane, ns: str
) -> None:
    plain = Cluster(None, str(kube_cluster.kubeconfig))
    w = server(ns)
    for obj in (
        manifests.deployment(w, "api-server", 1),
        manifests.service(w, "api-server", 8080, "http-serve"),
        manifests.params_secret(w, "api-server-params"),
        legacy_configmap(w, "api-server-params"),  # made before params moved to Secrets
    ):
        _make(plain, obj)
    swapping = Swapping(kube_cluster, "Deployment")
    request = DeleteRequest(
        address="modelserver.api",
        kind="modelserver",
        namespace=ns,
        name="api",
        digest=w.digest,
        spec={},
        outputs={"deployment": "api-server", "service": "api-server"},
        owner=OURS,
    )
    cleanup.delete(swapping, Store.parse("file:///nowhere"), TIMING, request, RunContext())
    assert swapping.copy is not None  # checked as ours, replaced before the delete
    live = plain.get("Deployment", ns, "api-server")
    assert live is not None and live["metadata"]["uid"] == swapping.copy["metadata"]["uid"]
    assert plain.get("Service", ns, "api-server") is None  # the rest was ours: deleted
    assert plain.get("Secret", ns, "api-server-params") is None
    assert plain.get("ConfigMap", ns, "api-server-params") is None


def test_destroy_and_suspend_leave_other_owners_objects_alone(cluster: Cluster, ns: str) -> None:
    other = Owner("another-lineage", "default")
    cluster.create(manifests.service_account(ns, "model-server"))
    _make(cluster, manifests.deployment(server(ns, other), "api-server", 1))
    pod = manifests.notebook_pod(server(ns, Owner(LINEAGE, "staging")), "lab-notebook", "t")
    _make(cluster, pod)
    phases: list[str] = []
    ctx = RunContext(phase=phases.append)
    request = DeleteRequest(
        "modelserver.api", "modelserver", ns, "api", "", {}, {"deployment": "api-server"}
    )
    cleanup.delete(cluster, Store.parse("file:///nowhere"), TIMING, request, ctx)
    notebooks.suspend(cluster, ns, "lab-notebook", ctx, TIMING, OURS, "notebook.lab")
    assert cluster.get("Deployment", ns, "api-server") is not None
    assert cluster.get("Pod", ns, "lab-notebook") is not None
    text = "\n".join(phases)
    assert f"left Deployment {ns}/api-server alone" in text and "lineage another-lineage" in text
    assert f"left Pod {ns}/lab-notebook alone" in text and "workspace 'staging'" in text


def _secret(ns: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "stringData": {"token": "known-to-whoever-made-it"},
    }


def test_only_the_token_secret_substratus_made_is_read(cluster: Cluster, ns: str) -> None:
    theirs = cluster.create(_secret(ns, "lab-notebook-token", {"app": "theirs"}))
    assert theirs is not None
    outputs = {"token_secret": "lab-notebook-token", "token_uid": "not-their-uid"}
    with pytest.raises(Failure, match="is not the token Secret substratus made"):
        notebooks.token(cluster, ns, "notebook.lab", outputs)
    legacy = {"token_secret": "lab-notebook-token"}  # a record made before uids were recorded
    with pytest.raises(Failure, match="is not the token Secret substratus made"):
        notebooks.token(cluster, ns, "notebook.lab", legacy)
    ours = {**outputs, "token_uid": theirs["metadata"]["uid"]}
    assert notebooks.token(cluster, ns, "notebook.lab", ours) == "known-to-whoever-made-it"
    older = {names.MANAGED_BY: "substratus", names.ADDRESS: "notebook.old"}
    cluster.create(_secret(ns, "old-notebook-token", older))
    old = {"token_secret": "old-notebook-token"}
    assert notebooks.token(cluster, ns, "notebook.old", old) == "known-to-whoever-made-it"


def test_plan_time_conflicts_cost_one_list_per_kind_and_a_get_per_secret(
    cluster: Cluster, ns: str
) -> None:
    def runs(n: int) -> list[PlannedRun]:
        return [
            PlannedRun(f"modelserver.s{i}", "modelserver", ns, f"s{i}", Action.CREATE, {})
            for i in range(n)
        ] + [PlannedRun("notebook.lab", "notebook", ns, "lab", Action.CREATE, {})]

    cluster.create(_secret(ns, "lab-notebook-token", {"app": "theirs"}))
    _make(cluster, manifests.service(server(ns, Owner("x", "default")), "s3-server", 80, "x"))

    def cost(n: int) -> tuple[int, list[Any]]:
        before = cluster.requests
        found = conflicts.find(cluster, runs(n), OURS)
        return cluster.requests - before, found

    # 3 LISTs (metadata only; Deployments, Services, Pods) + a GET per Secret: the params
    # Secret of each server and of the notebook, and the notebook's token (never listed)
    assert cost(1)[0] == 3 + 1 + 2
    n, found = cost(30)
    assert n == 3 + 30 + 2
    assert [(d.address, d.summary) for d in found] == [
        ("modelserver.s3", f"Service {ns}/s3-server already exists and is not this state's"),
        ("notebook.lab", f"Secret {ns}/lab-notebook-token already exists and is not this state's"),
    ]
    assert "lineage x" in found[0].detail and "not made by substratus" in found[1].detail
    assert conflicts.find(cluster, runs(0)[:0], OURS) == []


def test_objects_made_before_identities_are_claimed_only_by_the_state_recording_them(
    cluster: Cluster, ns: str
) -> None:
    cluster.create(manifests.service_account(ns, "model-server"))
    older = server(ns, Owner(None, "default"))  # no lineage label: made before identities
    made = [
        _make(cluster, manifests.params_secret(older, "api-server-params")),
        _make(cluster, manifests.deployment(older, "api-server", 1)),
        _make(cluster, manifests.service(older, "api-server", 8080, "http-serve")),
    ]
    selector = made[1]["spec"]["selector"]

    def rollout(recorded: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        w = server(ns)
        return servers.rollout(
            cluster,
            manifests.deployment(w, "api-server", 1),
            manifests.service(w, "api-server", 8080, "http-serve"),
            manifests.params_secret(w, "api-server-params"),
            RunContext(),
            TIMING,
            OURS,
            recorded,
        )

    with pytest.raises(Failure) as refused:
        rollout(recorded=False)  # a state without a record of it may not take it
    assert "made by substratus for modelserver.api before objects" in refused.value.detail
    live = cluster.get("Deployment", ns, "api-server")
    assert live is not None and live["metadata"]["generation"] == made[1]["metadata"]["generation"]
    dep, svc = rollout(recorded=True)  # the state that records it claims it
    assert [dep["metadata"]["uid"], svc["metadata"]["uid"]] == [
        made[1]["metadata"]["uid"],
        made[2]["metadata"]["uid"],
    ]
    assert dep["metadata"]["labels"][names.LINEAGE] == LINEAGE  # stamped with the identity
    assert dep["spec"]["selector"] == selector  # immutable: kept
    assert svc["spec"]["selector"][names.LINEAGE] == LINEAGE
