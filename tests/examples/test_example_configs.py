"""The example configurations are valid against the strict specs (DESIGN §3) and self-consistent.

This checks the documents kind by kind with ``substratus.engine.spec``; that the engine plans and
applies the quickstart is the end-to-end tests' job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from substratus.engine import spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KINDS = {
    "Dataset": "dataset",
    "Model": "model",
    "ModelServer": "modelserver",
    "Notebook": "notebook",
}


def documents(example: str) -> list[dict[str, Any]]:
    with (EXAMPLES / example / "substratus.yaml").open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def validated(example: str) -> dict[str, tuple[dict[str, Any], Any]]:
    """address -> (document, validated spec); the Project document under key "project"."""
    out: dict[str, tuple[dict[str, Any], Any]] = {}
    for doc in documents(example):
        if doc["kind"] == "Project":
            assert set(doc) == {"kind", "spec"}
            out["project"] = (doc, spec.ProjectSpec.model_validate(doc["spec"]))
            continue
        assert set(doc) <= {"kind", "name", "namespace", "spec", "lifecycle"}, doc
        kind = KINDS[doc["kind"]]
        assert spec.validate_name(doc["name"]) is None
        address = f"{kind}.{doc['name']}"
        assert address not in out, f"duplicate {address}"
        out[address] = (doc, spec.SPEC_MODELS[kind].model_validate(doc["spec"]))
    return out


def references(resources: dict[str, tuple[dict[str, Any], Any]]) -> set[tuple[str, str]]:
    edges = set()
    for address, (_doc, model) in resources.items():
        kind = address.split(".")[0]
        for path, target_kind, _role in spec.REFERENCES.get(kind, ()):
            value: Any = model
            for part in path:
                value = getattr(value, part, None) if value is not None else None
            if value is not None:
                edges.add((address, f"{target_kind}.{value.name}"))
    return edges


@pytest.mark.parametrize("example", ["quickstart", "falcon-7b"])
def test_example_is_valid_and_references_resolve(example: str) -> None:
    resources = validated(example)
    for source, target in references(resources):
        assert target in resources, f"{source} refers to missing {target}"


def test_quickstart_graph_and_local_contexts() -> None:
    resources = validated("quickstart")
    assert "project" not in resources  # no settings: everything local
    assert references(resources) == {
        ("model.tuned-ngram", "model.base-ngram"),
        ("model.tuned-ngram", "dataset.tiny-corpus"),
        ("modelserver.tuned-ngram", "model.tuned-ngram"),
    }
    for address, (_doc, model) in resources.items():
        container = model.container
        assert container.local is not None and container.command, address
        context = EXAMPLES / "quickstart" / container.local.path
        assert (context / container.command[-1]).is_file(), address
        dockerfile = (context / "Dockerfile").read_text()
        assert f'CMD ["python3", "{container.command[-1]}"]' in dockerfile, address


def test_falcon_7b_targets_kubernetes_and_keeps_the_secret_a_reference() -> None:
    resources = validated("falcon-7b")
    project = resources.pop("project")[1]
    assert project.runtime == "kubernetes" and project.cloud == "gcp"
    assert project.artifacts.startswith("gs://") and project.state.startswith("gs://")
    assert set(resources) == {
        "dataset.k8s-instructions",
        "model.falcon-7b",
        "model.falcon-7b-k8s",
        "modelserver.falcon-7b-k8s",
        "notebook.falcon-7b-dev",
    }
    loader = resources["model.falcon-7b"][1]
    assert spec.secret_refs(loader.container.env) == {
        "HUGGING_FACE_HUB_TOKEN": ("ai", "HUGGING_FACE_HUB_TOKEN")
    }
    trained = resources["model.falcon-7b-k8s"][1]
    assert trained.trainer.resources.gpu.count == 4
    assert resources["modelserver.falcon-7b-k8s"][1].quantization.bits == 4
    assert resources["notebook.falcon-7b-dev"][1].suspend is True
