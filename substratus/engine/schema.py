"""The JSON Schema of a configuration document (issue #16, editors), generated from the models.

``document_schema()`` describes one YAML document of a configuration: every kind of
``address.KIND_ALIASES`` and ``kind: Project``, each in both document forms of
``engine.documents`` — the design form (``kind/name/namespace/spec/lifecycle/sensitive``) and the
original operator's manifests (``apiVersion: substratus.ai/v1``, ``metadata``, and a spec either
in the design shape or in the operator's ``image/build/params/model/dataset`` shape). Nothing is
written by hand: the specs come from pydantic's JSON Schema of the models of ``engine.spec`` (and
of the operator-shape models below), and the input forms those models accept through their
"before" validators — a reference as a bare name, ``local: true``, a rate as one number, the
flat ``{gpuCount, type}`` resources — are added as alternatives (``INPUT_FORMS``).

The schema accepts what the engine accepts, short of what only code can check (a name's
syntax, a container's exactly-one source, reference targets); it never accepts an unknown
field. ``schema_text()`` is what ``substratus schema`` prints and ``schema/substratus.json``
holds (a test fails when that copy is stale).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from substratus.engine.address import KIND_ALIASES
from substratus.engine.documents import API_VERSION
from substratus.engine.spec import (
    SPEC_MODELS,
    Lifecycle,
    LocalSource,
    Params,
    ProjectSpec,
    Quantization,
    Rate,
    Ref,
    Resources,
    Strict,
)

DIALECT = "https://json-schema.org/draft/2020-12/schema"
Json = dict[str, Any]


class OperatorGit(Strict):
    """The operator's ``build.git``: a tag or a branch (else ``HEAD``) and a sub-directory."""

    url: str
    tag: str | None = None
    branch: str | None = None
    path: str = ""


class OperatorBuild(Strict):
    """The operator's ``build``: from Git, or ``upload`` (this file's directory)."""

    git: OperatorGit | None = None
    upload: Any = None


class OperatorSpec(Strict):
    """What every operator-shape spec has: an image or a build, a command, env and params."""

    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["image"]}, {"required": ["build"]}]}
    )

    image: str | None = None
    build: OperatorBuild | None = None
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    params: Params = Field(default_factory=dict)
    resources: Resources | None = None


class OperatorDatasetSpec(OperatorSpec):
    """An operator Dataset: ``params`` become ``loader.params``."""


class OperatorModelSpec(OperatorSpec):
    """An operator Model: with ``model``/``dataset`` a trainer, else a loader."""

    model: Ref | None = None
    dataset: Ref | None = None


class OperatorServerSpec(OperatorSpec):
    """An operator Server (ModelServer)."""

    model: Ref
    quantization: Quantization | None = None
    replicas: int = Field(1, ge=0)


class OperatorNotebookSpec(OperatorSpec):
    """An operator Notebook: ``model`` becomes ``sourceModel``."""

    model: Ref | None = None
    dataset: Ref | None = None
    suspend: bool = False


class Metadata(Strict):
    """An operator manifest's ``metadata``."""

    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


OPERATOR_SPECS: dict[str, type[OperatorSpec]] = {
    "dataset": OperatorDatasetSpec,
    "model": OperatorModelSpec,
    "modelserver": OperatorServerSpec,
    "notebook": OperatorNotebookSpec,
}


def _ref_forms(schema: Json) -> Json:
    return {"anyOf": [{"type": "string", "description": "The name (same namespace)."}, schema]}


def _rate_forms(schema: Json) -> Json:
    return {"anyOf": [{"type": "number", "minimum": 0, "description": "Both rates."}, schema]}


def _local_forms(schema: Json) -> Json:
    return {"anyOf": [{"const": True, "description": "This file's directory."}, schema]}


def _resources_forms(schema: Json) -> Json:
    props = {k: v for k, v in schema["properties"].items() if k != "gpu"}
    props["gpuCount"] = {"type": "integer", "minimum": 1}
    props["type"] = {"type": "string", "description": "The GPU type."}
    flat = {"type": "object", "properties": props, "additionalProperties": False}
    return {"anyOf": [schema, flat]}


# Input forms the models accept through "before" validators, added to their schema.
INPUT_FORMS: dict[type[BaseModel], Callable[[Json], Json]] = {
    Ref: _ref_forms,
    Rate: _rate_forms,
    LocalSource: _local_forms,
    Resources: _resources_forms,
}


def _definitions() -> tuple[dict[type[BaseModel], Json], Json]:
    """The ``$ref`` of every model and the ``$defs`` they share (input forms added)."""
    models: list[type[BaseModel]] = [
        *SPEC_MODELS.values(),
        ProjectSpec,
        Lifecycle,
        Metadata,
        *OPERATOR_SPECS.values(),
        *INPUT_FORMS,
    ]
    refs, top = models_json_schema([(m, "validation") for m in models])
    defs: Json = top["$defs"]
    for model, forms in INPUT_FORMS.items():
        name = refs[(model, "validation")]["$ref"].rsplit("/", 1)[1]
        defs[name] = forms(defs[name])
    return {m: refs[(m, "validation")] for m in models}, defs


def _document(kind: str, spec: Json, lifecycle: Json | None) -> Json:
    """The design form of a ``kind`` document (Project: no lifecycle, no sensitive list)."""
    props: Json = {
        "kind": {"const": kind},
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "spec": spec,
    }
    if lifecycle is not None:
        props["lifecycle"] = lifecycle
        props["sensitive"] = {"type": "array", "items": {"type": "string"}}
    required = ["kind"] if lifecycle is None else ["kind", "name", "spec"]
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


def _manifest(kind: str, spec: Json, lifecycle: Json | None, metadata: Json) -> Json:
    """The operator form of a ``kind`` document: ``apiVersion``, ``metadata``, ``spec``."""
    form = _document(kind, spec, lifecycle)
    props = {k: v for k, v in form["properties"].items() if k not in {"name", "namespace"}}
    props = {"apiVersion": {"const": API_VERSION}, **props, "metadata": metadata, "status": {}}
    required = ["apiVersion", "kind", "metadata"] + (["spec"] if lifecycle is not None else [])
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


def document_schema() -> Json:
    """The JSON Schema (draft 2020-12) of one document of a configuration (see the module)."""
    refs, defs = _definitions()
    lifecycle, metadata = refs[Lifecycle], refs[Metadata]
    cases: list[Json] = []
    kinds = [*KIND_ALIASES, "Project"]
    for kind in kinds:
        noun = KIND_ALIASES.get(kind)
        if noun is None:
            design, operator = _document(kind, refs[ProjectSpec], None), None
            manifest = _manifest(kind, refs[ProjectSpec], None, metadata)
        else:
            spec = refs[SPEC_MODELS[noun]]
            design = _document(kind, spec, lifecycle)
            operator = {"anyOf": [spec, refs[OPERATOR_SPECS[noun]]]}
            manifest = _manifest(kind, operator, lifecycle, metadata)
        defs[f"{kind}Document"], defs[f"{kind}Manifest"] = design, manifest
        branches = [{"$ref": f"#/$defs/{kind}Document"}, {"$ref": f"#/$defs/{kind}Manifest"}]
        when = {"properties": {"kind": {"const": kind}}, "required": ["kind"]}
        cases.append({"if": when, "then": {"oneOf": branches}})
    return {
        "$schema": DIALECT,
        "title": "substratus configuration document",
        "description": "One YAML document of a substratus configuration, in the design form "
        "(kind, name, spec) or as an operator manifest (apiVersion substratus.ai/v1, metadata). "
        "Generated by `substratus schema` from the pydantic models; do not edit.",
        "type": "object",
        "properties": {"kind": {"enum": kinds}},
        "required": ["kind"],
        "allOf": cases,
        "$defs": dict(sorted(defs.items())),
    }


def schema_text() -> str:
    """``document_schema()`` as the JSON ``substratus schema`` prints (stable, newline-ended)."""
    return json.dumps(document_schema(), indent=2, ensure_ascii=False) + "\n"
