"""Document shapes: the design's own shape and the Kubernetes-style shape of the original operator.

``normalize(doc)`` turns any accepted document into the design shape
``{kind, name, namespace?, spec, lifecycle?}`` and returns, for every field path of the result, the
path it came from in the document (so diagnostics point at the line the user wrote). Operator
manifests (``apiVersion: substratus.ai/v1`` with ``spec.image``/``spec.build``/``spec.params``…)
are translated: ``image``/``build.git`` become ``container``, ``params`` go to ``loader`` or
``trainer``, ``model``/``dataset`` become ``trainer.baseModel``/``trainer.dataset`` (Model) or
``sourceModel``/``dataset`` (Notebook).
"""

from __future__ import annotations

from typing import Any

from substratus.engine.diagnostic import Diagnostic
from substratus.engine.yamlsource import Document, FieldPath

API_VERSION = "substratus.ai/v1"
DESIGN_KEYS = {"kind", "name", "namespace", "spec", "lifecycle", "sensitive"}
K8S_KEYS = {"apiVersion", "kind", "metadata", "spec", "lifecycle", "sensitive", "status"}
OPERATOR_SPEC_KEYS = {"image", "build", "command", "env"}

PathMap = dict[FieldPath, FieldPath]  # normalized path prefix -> original path prefix


def original_path(path: FieldPath, pmap: PathMap) -> FieldPath:
    """Map a normalized field path back to where it was written."""
    for n in range(len(path), 0, -1):
        prefix = tuple(path[:n])
        if prefix in pmap:
            return pmap[prefix] + tuple(path[n:])
    return path


def normalize(doc: Document) -> tuple[dict[str, Any] | None, PathMap, list[Diagnostic]]:
    data = doc.data
    diags: list[Diagnostic] = []
    if not isinstance(data, dict):
        diags.append(
            Diagnostic.error(
                "A document must be a mapping",
                f"Got {type(data).__name__}; each YAML document declares one resource "
                "with kind, name and spec.",
                source=doc.source(),
            )
        )
        return None, {}, diags
    if "apiVersion" not in data and "metadata" not in data:
        for key in data:
            if key not in DESIGN_KEYS:
                diags.append(_unknown(doc, (key,), DESIGN_KEYS))
        return data, {}, diags

    for key in data:
        if key not in K8S_KEYS:
            diags.append(_unknown(doc, (key,), K8S_KEYS))
    if data.get("apiVersion") != API_VERSION:
        diags.append(
            Diagnostic.error(
                "Unsupported apiVersion",
                f"apiVersion is {data.get('apiVersion')!r}; use {API_VERSION!r}.",
                source=doc.source(("apiVersion",)),
                path="apiVersion",
            )
        )
    meta = data.get("metadata")
    out: dict[str, Any] = {"kind": data.get("kind")}
    pmap: PathMap = {("name",): ("metadata", "name"), ("namespace",): ("metadata", "namespace")}
    if not isinstance(meta, dict):
        diags.append(
            Diagnostic.error(
                "metadata must be a mapping with a name",
                source=doc.source(("metadata",)),
                path="metadata",
            )
        )
    else:
        for key in meta:
            if key not in {"name", "namespace", "labels", "annotations"}:
                diags.append(_unknown(doc, ("metadata", key), {"name", "namespace", "labels"}))
        if "name" in meta:
            out["name"] = meta["name"]
        if "namespace" in meta:
            out["namespace"] = meta["namespace"]
    for key in ("lifecycle", "sensitive"):
        if key in data:
            out[key] = data[key]
    spec = data.get("spec")
    if isinstance(spec, dict) and OPERATOR_SPEC_KEYS & set(spec) and "container" not in spec:
        out["spec"], spec_map = _translate_operator_spec(str(data.get("kind")), spec)
        pmap.update(spec_map)
    elif "spec" in data:
        out["spec"] = spec
    return out, pmap, diags


def _translate_operator_spec(kind: str, spec: dict[str, Any]) -> tuple[dict[str, Any], PathMap]:
    s: FieldPath = ("spec",)
    pmap: PathMap = {}
    container: dict[str, Any] = {}
    out: dict[str, Any] = {"container": container}
    if "image" in spec:
        container["image"] = spec["image"]
        pmap[(*s, "container", "image")] = (*s, "image")
    build = spec.get("build")
    if isinstance(build, dict):
        git = build.get("git")
        if isinstance(git, dict):
            ref = git.get("tag") or git.get("branch") or "HEAD"
            container["git"] = {"url": git.get("url"), "ref": ref, "path": git.get("path", "")}
            pmap[(*s, "container", "git")] = (*s, "build", "git")
        elif "upload" in build:
            container["local"] = {"path": "."}
            pmap[(*s, "container", "local")] = (*s, "build", "upload")
        else:
            container["git"] = build  # let validation report what is wrong
            pmap[(*s, "container", "git")] = (*s, "build")
    for key in ("command", "env"):
        if key in spec:
            container[key] = spec[key]
            pmap[(*s, "container", key)] = (*s, key)
    pmap[(*s, "container")] = (*s, "image") if "image" in spec else (*s, "build")
    params = spec.get("params", {})
    rest = {
        k: v for k, v in spec.items() if k not in {"image", "build", "command", "env", "params"}
    }
    kind = {"Server": "ModelServer"}.get(kind, kind)
    if kind == "Dataset":
        out["loader"] = {"params": params}
        pmap[(*s, "loader", "params")] = (*s, "params")
    elif kind == "Model":
        if "model" in rest or "dataset" in rest:
            trainer: dict[str, Any] = {"params": params}
            pmap[(*s, "trainer", "params")] = (*s, "params")
            if "model" in rest:
                trainer["baseModel"] = rest.pop("model")
                pmap[(*s, "trainer", "baseModel")] = (*s, "model")
            if "dataset" in rest:
                trainer["dataset"] = rest.pop("dataset")
                pmap[(*s, "trainer", "dataset")] = (*s, "dataset")
            out["trainer"] = trainer
        else:
            out["loader"] = {"params": params}
            pmap[(*s, "loader", "params")] = (*s, "params")
    else:
        if "params" in spec:
            out["params"] = params
            pmap[(*s, "params")] = (*s, "params")
        if kind == "Notebook" and "model" in rest:
            out["sourceModel"] = rest.pop("model")
            pmap[(*s, "sourceModel")] = (*s, "model")
    for key, value in rest.items():
        out[key] = value
    return out, pmap


def _unknown(doc: Document, path: FieldPath, allowed: set[str]) -> Diagnostic:
    import difflib

    key = str(path[-1])
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return Diagnostic.error(
        f"Unknown field {key!r}",
        f"Allowed here: {', '.join(sorted(allowed))}.{hint}",
        source=doc.source(path),
        path=".".join(str(p) for p in path),
    )
