"""The JSON Schema of a configuration document (``substratus.engine.schema``, issue #16).

``schema/substratus.json`` is what ``substratus schema`` prints, run as a real process; every
document of the examples, the golden cases and the other configurations under tests/ (the seed's
legacy forms, the compat fixtures) is valid against it under a real JSON Schema validator
(``jsonschema``); the input forms the engine accepts are valid, and documents the engine rejects
for their kind or a field's type are invalid against it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from substratus.engine.config import load_config
from substratus.engine.diagnostic import DiagnosticError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schema" / "substratus.json"
EXAMPLE_CONFIGS = sorted((ROOT / "examples").glob("*/substratus.yaml"))
TESTS = ROOT / "tests"
CONFIGS = EXAMPLE_CONFIGS + sorted(
    set(TESTS.glob("cases/*/*.yaml")) | set(TESTS.glob("**/substratus.yaml"))
)


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_checked_in_schema_is_what_the_command_prints() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "substratus", "schema"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    ).stdout
    assert out == SCHEMA.read_text(encoding="utf-8"), (
        "schema/substratus.json is stale: run `substratus schema > schema/substratus.json`"
    )


def test_every_kind_and_form_is_described() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    kinds = schema["properties"]["kind"]["enum"]
    assert kinds == ["Dataset", "Model", "ModelServer", "Server", "Notebook", "Project"]
    for kind in kinds:
        assert {f"{kind}Document", f"{kind}Manifest"} <= set(schema["$defs"])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_and_golden_document_is_valid(path: Path) -> None:
    check = validator()
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert docs
    for doc in docs:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in check.iter_errors(doc)]
        assert errors == [], f"{path}: {doc.get('kind')} {doc.get('name')}"


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=lambda p: p.parent.name)
def test_examples_name_the_schema_for_editors(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix)
    assert (path.parent / first[len(prefix) :]).resolve() == SCHEMA


DATASET: dict[str, Any] = {
    "kind": "Dataset",
    "name": "d",
    "spec": {"container": {"image": "loader"}, "loader": {"params": {"n": 1}}},
}
SERVER: dict[str, Any] = {
    "apiVersion": "substratus.ai/v1",
    "kind": "Server",
    "metadata": {"name": "s"},
    "spec": {"image": "server", "model": {"name": "m"}},
}
VALID: dict[str, dict[str, Any]] = {
    "dataset": DATASET,
    "operator server": SERVER,
    "reference by name, flat resources": {
        **SERVER,
        "spec": {"image": "server", "model": "m", "resources": {"gpuCount": 2, "type": "L4"}},
    },
    "local: true": {**DATASET, "spec": {"container": {"local": True}}},
    "a rate as one number": {
        "kind": "Project",
        "spec": {"prices": {"cpuHour": 0.03, "gpu": {"l4": {"spot": 0.2}}}},
    },
}
INVALID: dict[str, dict[str, Any]] = {
    "unknown kind": {**DATASET, "kind": "Dataste"},
    "no kind": {k: v for k, v in DATASET.items() if k != "kind"},
    "wrong type": {**DATASET, "spec": {"container": {"image": "loader", "command": "run.sh"}}},
    "unknown field": {**DATASET, "spec": {**DATASET["spec"], "laoder": {}}},
    "no name": {k: v for k, v in DATASET.items() if k != "name"},
    "replicas not a number": {**SERVER, "spec": {**SERVER["spec"], "replicas": "two"}},
    "other apiVersion": {**SERVER, "apiVersion": "substratus.ai/v2"},
    "design key in a manifest": {**SERVER, "name": "s"},
    "quantization bits": {**SERVER, "spec": {**SERVER["spec"], "quantization": {"bits": 3}}},
}


@pytest.mark.parametrize("doc", VALID.values(), ids=list(VALID))
def test_accepted_forms_are_valid_for_schema_and_engine(
    doc: dict[str, Any], tmp_path: Path
) -> None:
    assert list(validator().iter_errors(doc)) == []
    (tmp_path / "substratus.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    load_config([str(tmp_path)])


@pytest.mark.parametrize("doc", INVALID.values(), ids=list(INVALID))
def test_invalid_documents_are_rejected_by_schema_and_engine(
    doc: dict[str, Any], tmp_path: Path
) -> None:
    assert list(validator().iter_errors(doc)) != []
    (tmp_path / "substratus.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(DiagnosticError):
        load_config([str(tmp_path)])
