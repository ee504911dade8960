"""Load and validate configuration: files → typed ``Resource``s and project ``Settings``.

``load_config(paths, ...)`` reads files or directories of ``*.yaml``/``*.yml``, accepts both the
design shape and the Kubernetes-style shape (``engine.documents``), validates every document
strictly with the pydantic models of ``engine.spec``, resolves references and adds implicit
``build`` resources for git/local containers. Every problem becomes a ``Diagnostic`` with
file:line and field path; all of them are reported together by raising one ``DiagnosticError``.
It does no network I/O (git refs are resolved later, by ``engine.digest``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from substratus.engine.address import KIND_ALIASES, Address, name_problem
from substratus.engine.builds import attach_builds
from substratus.engine.diagnostic import Diagnostic, DiagnosticError, Diagnostics, Location
from substratus.engine.documents import PathMap, normalize, original_path
from substratus.engine.resource import Dependency, Resource
from substratus.engine.sensitive import mask, split_path
from substratus.engine.spec import REFERENCES, SPEC_MODELS, Lifecycle, ProjectSpec, canonical
from substratus.engine.validation import (
    nodes_diagnostics,
    pydantic_diagnostics,
    size_diagnostics,
)
from substratus.engine.yamlsource import Document, load_documents, path_str

DEFAULT_NAMESPACE = "default"
_NO_LIFECYCLE = Lifecycle()


@dataclass
class Settings:
    """Project settings from ``kind: Project`` (flags and env vars override them in the CLI)."""

    project: ProjectSpec = field(default_factory=ProjectSpec)
    base_dir: Path = field(default_factory=Path.cwd)  # where `.substratus/` lives by default
    source: str | None = None
    # where each setting the Project document gives is written: "state" → file:line of spec.state
    where: dict[str, Location] = field(default_factory=dict)


@dataclass
class Config:
    resources: dict[Address, Resource]
    settings: Settings
    files: list[str]
    default_namespace: str
    digest: str  # sha256 over the files' relative paths and bytes
    external: dict[Address, list[tuple[Resource, Dependency]]] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)


def _inside(path: Path, directory: Path) -> bool:
    """Whether ``path`` lies inside ``directory`` (not ``directory`` itself)."""
    inner, outer = path.resolve(), directory.resolve()
    return inner != outer and inner.is_relative_to(outer)


# A ``kind`` key anywhere in a file (block or flow style): every substratus document has one.
_KIND_KEY = re.compile(rb"""(?m)(^|[{,])[ \t]*["']?kind["']?[ \t]*:""")
# A line with content: not blank, not a comment, not a document marker.
_CONTENT = re.compile(rb"(?m)^(?![ \t]*(#|---|\.\.\.|$))")


def _foreign(path: Path) -> bool:
    """Whether ``path`` (found in a directory) is not a substratus configuration: content but
    no ``kind`` key anywhere in it — a docker-compose file, a CI workflow, an environment file
    beside the code. An empty file (or only comments) is an empty configuration; unreadable
    files are left to the loader to report."""
    try:
        text = path.read_bytes()
    except OSError:
        return False
    return _KIND_KEY.search(text) is None and _CONTENT.search(text) is not None


def find_files(paths: list[str]) -> tuple[list[Path], list[Diagnostic]]:
    """The configuration files of ``paths`` (a directory: its ``*.yaml``/``*.yml``, not hidden
    ones, without those that are not substratus files — no ``kind`` key anywhere: each is a
    warning naming it; a file given by itself is always read). A directory without any is an
    error, unless another path lies inside it: it is then only the configuration's root (the
    notebooks ``substratus notebook -d`` wrote under its ``.substratus/`` in a directory that
    holds no configuration of its own)."""
    files: list[Path] = []
    diags: list[Diagnostic] = []
    given = [Path(raw) for raw in paths or ["."]]
    for raw in paths or ["."]:
        p = Path(raw)
        if p.is_dir():
            found: list[Path] = []
            skipped: list[Path] = []
            for c in sorted(p.iterdir()):
                if c.suffix in {".yaml", ".yml"} and c.is_file() and not c.name.startswith("."):
                    (skipped if _foreign(c) else found).append(c)
            diags.extend(_skipped(c) for c in skipped)
            if not found and not any(_inside(o, p) for o in given):
                others = f" ({len(skipped)} skipped: no kind)" if skipped else ""
                diags.append(
                    Diagnostic.error(
                        "No configuration files",
                        f"The directory {raw} has no substratus *.yaml or *.yml files{others}. "
                        "Point -f at a file or a directory that holds your resources.",
                    )
                )
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            diags.append(
                Diagnostic.error(
                    "Configuration path not found",
                    f"{raw} does not exist. Pass an existing file or directory with -f.",
                )
            )
    unique = list(dict.fromkeys(f.resolve() for f in files))
    return unique, diags


def _skipped(path: Path) -> Diagnostic:
    return Diagnostic.warning(
        f"{display_path(path)} is not a substratus configuration: skipped",
        "No document in it has a kind (Dataset, Model, ModelServer, Notebook, Project). Add the "
        "kind if it is one; otherwise this warning goes when the file moves out of the "
        "directory, or when -f names the configuration files themselves.",
        source=Location(display_path(path), 1),
    )


def config_root(paths: list[str]) -> Path:
    """The configuration's root: the deepest directory that contains every ``-f`` path (a
    directory given with ``-f`` counts as itself, a file as the directory it is in); the current
    directory without ``-f``. The default state, artifacts and runs live in ``<root>/.substratus``
    and build sources are named relative to it, so the order of ``-f`` flags never matters."""
    dirs = []
    for raw in paths or ["."]:
        p = Path(raw).resolve()
        dirs.append(p if p.is_dir() else p.parent)
    return Path(os.path.commonpath([str(d) for d in dirs]))


def display_path(p: Path) -> str:
    try:
        return os.path.relpath(p)
    except ValueError:
        return str(p)


def load_config(paths: list[str], namespace: str | None = None) -> Config:
    """Load, validate and resolve the configuration; raises ``DiagnosticError`` on any error."""
    diags = Diagnostics()
    files, found = find_files(paths)
    diags.extend(found)
    digest = hashlib.sha256()
    docs: list[Document] = []
    root = config_root(paths)
    for f in sorted(files, key=lambda f: os.path.relpath(f, root)):
        text = f.read_text(encoding="utf-8", errors="replace")
        rel = display_path(f)
        digest.update(os.path.relpath(f, root).encode() + b"\0" + text.encode() + b"\0")
        parsed, errs = load_documents(text, rel)
        diags.extend(errs)
        docs.extend(d for d in parsed if d.data is not None)
    diags.raise_if_errors()

    settings = Settings(base_dir=root)
    normalized: list[tuple[Document, dict[str, Any], PathMap]] = []
    for doc in docs:
        data, pmap, errs = normalize(doc)
        diags.extend(errs)
        if data is None:
            continue
        if data.get("kind") == "Project":
            _project(doc, data, pmap, settings, diags)
        else:
            normalized.append((doc, data, pmap))

    default_ns = namespace or settings.project.kubernetes.namespace or DEFAULT_NAMESPACE
    resources: dict[Address, Resource] = {}
    for doc, data, pmap in normalized:
        res = _resource(doc, data, pmap, default_ns, diags)
        if res is None:
            continue
        if res.address in resources:
            first = resources[res.address].source
            diags.error(
                f"Duplicate resource {res.address}",
                f"{res.address} is already declared at {first}. Rename one of them.",
                source=res.source,
                address=str(res.address),
            )
            continue
        resources[res.address] = res
    external = _resolve_references(resources, diags)
    diags.raise_if_errors()
    attach_builds(resources, diags, root)
    diags.raise_if_errors()
    return Config(
        resources=resources,
        settings=settings,
        files=[display_path(f) for f in files],
        default_namespace=default_ns,
        digest=_masked_digest(resources, settings, files, root) or "sha256:" + digest.hexdigest(),
        external=external,
        warnings=[d for d in diags if not d.is_error],
    )


def _masked_digest(
    resources: Mapping[Address, Resource], settings: Settings, files: list[Path], root: Path
) -> str | None:
    """The configuration's digest when it has sensitive params (else None: the files' bytes
    are hashed). Plans publish it (``config_digest``), so it is computed over what the files
    declare with the sensitive values taken out — their markers, as in every plan — never over
    the text that holds them (``engine.sensitive``)."""
    if not any(r.secrets for r in resources.values()):
        return None
    doc = {
        "files": sorted(os.path.relpath(f, root) for f in files),
        "project": settings.project.model_dump(mode="json"),
        "resources": {
            str(a): {
                "kind": r.kind,
                "spec": r.spec,
                "lifecycle": r.lifecycle.model_dump(mode="json", exclude_defaults=True),
                "sensitive": sorted(r.secrets),
                "origin": r.origin,
            }
            for a, r in resources.items()
        },
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _project(
    doc: Document, data: dict[str, Any], pmap: PathMap, settings: Settings, diags: Diagnostics
) -> None:
    if settings.source is not None:
        diags.error(
            "More than one Project document",
            f"Project settings are already declared at {settings.source}; keep one.",
            source=doc.source(),
        )
        return
    settings.source = str(doc.source())
    spec = data.get("spec")
    for key in spec if isinstance(spec, dict) else ():
        settings.where[str(key)] = doc.source(("spec", key))
    try:
        settings.project = ProjectSpec.model_validate(data.get("spec") or {})
    except ValidationError as exc:
        diags.extend(pydantic_diagnostics(exc, ProjectSpec, doc, ("spec",), pmap, "Project"))


def _resource(
    doc: Document, data: dict[str, Any], pmap: PathMap, default_ns: str, diags: Diagnostics
) -> Resource | None:
    """One resource document to a Resource, or None with the reasons added to ``diags``."""
    kind = _kind(doc, data, pmap, diags)
    identity = _identity(doc, data, pmap, default_ns, diags) if kind else None
    if kind is None or identity is None:
        return None
    name, ns, ok = identity
    address = Address(kind, name, None if ns == default_ns else ns)
    spec_obj = _spec(doc, data, pmap, kind, address, diags)
    lifecycle = _lifecycle(doc, data, pmap, address, diags)
    spec = canonical(spec_obj) if spec_obj is not None else {}
    paths = _sensitive_paths(doc, data, pmap, spec, str(address), diags)
    too_large = size_diagnostics(doc, pmap, spec, str(address))
    too_large += nodes_diagnostics(doc, pmap, kind, spec, str(address))
    diags.extend(too_large)
    if not ok or spec_obj is None or lifecycle is None or paths is None or too_large:
        return None
    res = Resource(
        address=address,
        kind=kind,
        namespace=ns,
        name=name,
        spec=spec,
        secrets=mask(spec, paths),
        lifecycle=lifecycle,
        source=doc.source(),
        lines=doc.lines,
        path_map=pmap,
        file=doc.file,
    )
    res.dependencies.extend(_dependencies(res, default_ns))
    return res


def _kind(doc: Document, data: dict[str, Any], pmap: PathMap, diags: Diagnostics) -> str | None:
    raw_kind = data.get("kind")
    kind = KIND_ALIASES.get(raw_kind) if isinstance(raw_kind, str) else None
    if kind is None:
        diags.error(
            f"Unknown kind {raw_kind!r}" if raw_kind is not None else "Missing kind",
            "kind must be one of Dataset, Model, ModelServer (or Server), Notebook, Project.",
            source=doc.source(original_path(("kind",), pmap)),
            path="kind",
        )
    return kind


def _identity(
    doc: Document, data: dict[str, Any], pmap: PathMap, default_ns: str, diags: Diagnostics
) -> tuple[str, str, bool] | None:
    """(name, namespace, valid) of a document; None when it has no name at all."""
    name = data.get("name")
    name_path = original_path(("name",), pmap)
    if not isinstance(name, str):
        diags.error(
            "Missing name" if name is None else "Invalid name",
            "Every resource needs a name."
            if name is None
            else f"The name must be a string, not {name!r}; quote it.",
            source=doc.source(name_path),
            path=path_str(name_path),
        )
        return None
    ok = True
    problem = name_problem(name)  # the whole string: "ok\n" is no name
    if problem:
        diags.error(
            "Invalid name", problem + ".", source=doc.source(name_path), path=path_str(name_path)
        )
        ok = False
    ns = str(data.get("namespace") or default_ns)
    ns_problem = name_problem(ns, 63)
    if ns_problem:
        ns_path = original_path(("namespace",), pmap)
        diags.error(
            "Invalid namespace",
            ns_problem + ".",
            source=doc.source(ns_path),
            path=path_str(ns_path),
        )
        ok = False
    return name, ns, ok


def _spec(
    doc: Document,
    data: dict[str, Any],
    pmap: PathMap,
    kind: str,
    address: Address,
    diags: Diagnostics,
) -> BaseModel | None:
    model_cls: type[BaseModel] = SPEC_MODELS[kind]
    spec_data = data.get("spec")
    try:
        return model_cls.model_validate({} if spec_data is None else spec_data)
    except ValidationError as exc:
        diags.extend(pydantic_diagnostics(exc, model_cls, doc, ("spec",), pmap, str(address)))
        return None


def _lifecycle(
    doc: Document, data: dict[str, Any], pmap: PathMap, address: Address, diags: Diagnostics
) -> Lifecycle | None:
    try:
        raw_lifecycle = data.get("lifecycle")
        lifecycle = Lifecycle.model_validate(raw_lifecycle) if raw_lifecycle else _NO_LIFECYCLE
    except ValidationError as exc:
        diags.extend(pydantic_diagnostics(exc, Lifecycle, doc, ("lifecycle",), pmap, str(address)))
        return None
    ok = True
    for i, p in enumerate(lifecycle.ignoreChanges):
        if not p.startswith("spec."):
            lp = original_path(("lifecycle", "ignoreChanges", i), pmap)
            diags.error(
                "Invalid ignoreChanges path",
                f"{p!r} must be a field path under spec, like spec.loader.params.x.",
                source=doc.source(lp),
                address=str(address),
                path=path_str(lp),
            )
            ok = False
    return lifecycle if ok else None


def _dependencies(res: Resource, default_ns: str) -> list[Dependency]:
    """The references in a resource's spec; a reference's own namespace is made implicit."""
    found = []
    for field_path, ref_kind, role in REFERENCES[res.kind]:
        node: Any = res.spec
        for part in field_path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            target_ns = node.get("namespace") or res.namespace
            if node.get("namespace") == res.namespace:
                del node["namespace"]  # canonical: a reference's own namespace is implied
            target = Address(ref_kind, node["name"], None if target_ns == default_ns else target_ns)
            found.append(Dependency(role, target, "spec." + ".".join(field_path)))
    return found


def _sensitive_paths(
    doc: Document,
    data: dict[str, Any],
    pmap: PathMap,
    spec: dict[str, Any],
    address: str,
    diags: Diagnostics,
) -> list[str] | None:
    """The validated ``sensitive:`` list of a document (None when it has errors)."""
    raw = data.get("sensitive")
    if raw is None:
        return []
    where = original_path(("sensitive",), pmap)
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        diags.error(
            "Invalid sensitive list",
            "sensitive is a list of param paths, like [spec.loader.params.token].",
            source=doc.source(where),
            address=address,
            path="sensitive",
        )
        return None
    ok = True
    for i, path in enumerate(raw):
        parts = split_path(path)
        node: Any = spec
        for part in parts or ():
            node = node.get(part, _UNSET) if isinstance(node, dict) else _UNSET
        if parts is None or node is _UNSET:
            detail = (
                "it is not set in the spec"
                if parts is not None
                else "only params can be sensitive: spec.loader.params.X, "
                "spec.trainer.params.X or spec.params.X"
            )
            diags.error(
                f"Invalid sensitive path {path!r}",
                f"{detail}.",
                source=doc.source((*where, i)),
                address=address,
                path=f"sensitive[{i}]",
            )
            ok = False
    return list(dict.fromkeys(raw)) if ok else None


_UNSET = object()


def _resolve_references(
    resources: dict[Address, Resource], diags: Diagnostics
) -> dict[Address, list[tuple[Resource, Dependency]]]:
    """Self-references are errors; references to resources not in the configuration are
    returned as external dependencies (the planner reads them or reports them dangling)."""
    external: dict[Address, list[tuple[Resource, Dependency]]] = {}
    for res in resources.values():
        for dep in res.dependencies:
            if dep.address == res.address:
                diags.error(
                    "Resource references itself",
                    f"{dep.path} of {res.address} names {res.address} itself; a "
                    f"{res.kind} cannot depend on itself. Reference another resource.",
                    source=res.source_of(dep.path),
                    address=str(res.address),
                    path=dep.path,
                )
            elif dep.address not in resources:
                external.setdefault(dep.address, []).append((res, dep))
    return external


def dangling_reference(
    res: Resource,
    dep: Dependency,
    resources: dict[Address, Resource],
    searched: str = "the state or the artifact store",
) -> Diagnostic:
    """The diagnostic for a reference that is neither configured nor found in ``searched``
    (what was looked in: the planner reads the state and the runtime, ``validate`` no state)."""
    import difflib

    same_kind = [str(a) for a in resources if a.kind == dep.address.kind]
    close = difflib.get_close_matches(str(dep.address), same_kind, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    return Diagnostic.error(
        f"Reference to undeclared resource {dep.address}",
        f"{dep.path} of {res.address} names {dep.address}, which is not in the configuration "
        f"and was not found in {searched}.{hint} Declare it, or fix the name.",
        source=res.source_of(dep.path),
        address=str(res.address),
        path=dep.path,
    )


def removed_reference(res: Resource, dep: Dependency) -> Diagnostic:
    """The diagnostic for a reference to a resource removed from the configuration that the
    state still records: the plan would destroy it while ``res`` still uses it."""
    return Diagnostic.error(
        f"{dep.address} was removed from the configuration but {res.address} still uses it",
        f"{dep.path} of {res.address} names {dep.address}, which is still recorded in the "
        "state but no longer in the configuration, so applying the configuration would destroy "
        f"it while {res.address} depends on it. Keep {dep.address} in the configuration, or "
        f"first remove or repoint {dep.path} of {res.address}; then {dep.address} can be "
        "destroyed.",
        source=res.source_of(dep.path),
        address=str(res.address),
        path=dep.path,
    )


def raise_dangling(
    missing: list[tuple[Resource, Dependency]],
    resources: dict[Address, Resource],
    searched: str = "the state or the artifact store",
) -> None:
    if missing:
        raise DiagnosticError([dangling_reference(r, d, resources, searched) for r, d in missing])
