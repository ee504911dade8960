"""``resources.nodes`` in the engine (issue #15): the spec field and its digest, the kinds that
may span nodes, ``validate``'s error elsewhere, the estimate (N × per-node resources) and the
capacity check (N nodes each taking the GPUs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from substratus.engine import kinds
from substratus.engine.capacity import GpuRequest, check_capacity
from substratus.engine.config import load_config
from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.render import render_plan
from substratus.engine.runtime import Capacity, NodeOffer
from substratus.engine.spec import DatasetSpec, canonical
from tests.estimate import scenarios as sc

CONTAINER = "  container: {local: {path: .}, command: [python3, run.py]}\n"


def test_one_node_is_the_default_and_leaves_the_canonical_spec_as_it_was() -> None:
    plain = {"container": {"image": "x"}}
    before = canonical(DatasetSpec.model_validate(plain))
    one = canonical(DatasetSpec.model_validate({**plain, "resources": {"nodes": 1}}))
    two = canonical(DatasetSpec.model_validate({**plain, "resources": {"nodes": 2}}))
    assert before == one and "nodes" not in before["resources"]
    assert two["resources"]["nodes"] == 2 and two != before
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        DatasetSpec.model_validate({**plain, "resources": {"nodes": 0}})


def test_jobs_span_their_nodes_and_nothing_else_does() -> None:
    trainer = {"trainer": {"dataset": {"name": "d"}, "resources": {"nodes": 4}}}
    assert kinds.nodes("model", {**trainer, "resources": {"nodes": 2}}) == 4
    assert kinds.nodes("dataset", {"resources": {"nodes": 3}}) == 3
    assert kinds.nodes("dataset", {}) == 1
    assert kinds.nodes("model", {"url": "gs://x", "resources": {"nodes": 3}}) == 1
    found = kinds.compute("dataset", {"resources": {"nodes": 3, "cpu": 4}})
    assert found is not None and (found.nodes, found.instances, found.cpu) == (3, 3, 4)
    assert kinds.misplaced_nodes("modelserver", {"resources": {"nodes": 2}}) == (
        "spec.resources.nodes"
    )
    assert kinds.misplaced_nodes("notebook", {"resources": {"nodes": 2}}) is not None
    assert kinds.misplaced_nodes("notebook", {"resources": {}}) is None
    assert kinds.misplaced_nodes("dataset", {"resources": {"nodes": 2}}) is None


@pytest.mark.parametrize(
    ("kind", "extra", "hint"),
    [
        ("ModelServer", "  model: m\n", "scale it with spec.replicas instead"),
        ("Notebook", "", "a notebook runs as one pod"),
    ],
)
def test_validate_refuses_nodes_on_servers_and_notebooks(
    tmp_path: Path, kind: str, extra: str, hint: str
) -> None:
    text = (
        "kind: Model\nname: m\nspec:\n  url: gs://b/m\n---\n"
        f"kind: {kind}\nname: s\nspec:\n{CONTAINER}{extra}"
        "  resources:\n    cpu: 2\n    nodes: 2\n"
    )
    (tmp_path / "c.yaml").write_text(text)
    line = text.count("\n")  # the last line: nodes
    with pytest.raises(DiagnosticError) as err:
        load_config([str(tmp_path)])
    [d] = err.value.diagnostics
    assert d.summary == "nodes is only for loaders and trainers"
    assert str(d.source).endswith(f"c.yaml:{line}") and d.path == "spec.resources.nodes"
    assert hint in d.detail and "Remove spec.resources.nodes." in d.detail
    assert d.address == f"{kind.lower()}.s"


def test_the_estimate_counts_every_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = sc.applied(sc.falcon(tmp_path, monkeypatch))
    old = "      gpu: {type: nvidia-l4, count: 4}\n      memory: 64\n"
    one = sc.replan(h, "num_train_epochs: 1", "num_train_epochs: 2")
    two = sc.replan(h, old, f"{old}      nodes: 2\n")
    [row1] = [e for e in one.estimate_json()["resources"] if e["address"] == "model.falcon-7b-k8s"]
    [row2] = [e for e in two.estimate_json()["resources"] if e["address"] == "model.falcon-7b-k8s"]
    assert "nodes" not in row1 and row2["nodes"] == 2
    assert row2["cost"] == pytest.approx(2 * row1["cost"], abs=1e-3)
    assert row2["gpu_hours"] == pytest.approx(2 * row1["gpu_hours"])
    totals1, totals2 = one.estimate_json()["totals"], two.estimate_json()["totals"]
    assert totals2["gpus"]["nvidia-l4"] - totals1["gpus"]["nvidia-l4"] == 4  # 4 more on node 2
    text = render_plan(two)
    assert "2 nodes × (4 × nvidia-l4, 2 vCPU, 64 GB, spot)   1h 30m   ≈ $2.88" in text
    assert re.search(r"\+ trainer\.resources\.nodes +=  ?2  # forces replacement", text)


def _offers(*offers: NodeOffer) -> Capacity:
    return Capacity(offers=offers)


def test_capacity_needs_as_many_nodes_as_ranks() -> None:
    req = GpuRequest("model.m", "spec.resources.gpu", "nvidia-h100", 8, nodes=3)
    two = _offers(
        NodeOffer("a", "nvidia-h100", 8), NodeOffer("b", "nvidia-h100", 8), NodeOffer("c", None, 0)
    )
    [d] = check_capacity([req], two)
    assert d.summary.startswith(
        "model.m asks for 3 nodes with 8 × nvidia-h100 each, but only 2 nodes have that"
    )
    assert "lower resources.nodes to at most 2" in d.detail
    assert check_capacity([req], _offers(*two.offers, NodeOffer("d", "nvidia-h100", 8))) == []
    template = NodeOffer("pool", "nvidia-h100", 8, source="template")
    assert check_capacity([req], _offers(*two.offers, template)) == []
    # one node too small: the per-node warning, not the nodes one
    [small] = check_capacity([req], _offers(NodeOffer("a", "nvidia-h100", 4)))
    assert "on one node" in small.summary
