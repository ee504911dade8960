"""A small model of substratus configurations, and hypothesis strategies over it.

``Cfg`` is an ordered list of ``Res`` (generation order is a topological order: a resource only
references resources generated before it). ``render`` turns a ``Cfg`` into configuration text in a
given ``Style`` (document order, reference form, ``Server`` alias, explicit defaults, flow or
block YAML), all of which mean the same configuration. The model knows the dependency graph
independently of the engine, so the tests can say what a plan *should* contain.

Strategies: ``configs()`` builds random valid DAGs of Datasets, loader/url/trained Models,
ModelServers and Notebooks with random params, from images or from local build contexts
(``CONTEXTS``, several with the same basename); ``draw_edit(draw, cfg)`` makes one random valid
edit (change a param, add a resource, remove a leaf, change a server's replicas/quantization,
rename a resource and its references, point a trained Model at another Dataset, and the
metadata edits: ``lifecycle``, ``sensitive:`` and ``spec.retries``, which must never run
anything).
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml
from hypothesis import strategies as st

T = TypeVar("T")
Key = tuple[str, str]  # (name, namespace)
Draw = Callable[[st.SearchStrategy[T]], T]

DOC_KIND = {
    "dataset": "Dataset",
    "model": "Model",
    "modelserver": "ModelServer",
    "notebook": "Notebook",
}
IMAGES = {
    "dataset": ["substratusai/dataset-loader-http", "substratusai/dataset-squad"],
    "model": ["substratusai/model-loader-huggingface", "substratusai/model-trainer-huggingface"],
    "modelserver": ["substratusai/model-server-basaran", "substratusai/model-server-vllm"],
    "notebook": ["substratusai/base", "jupyter/minimal-notebook"],
}


@dataclass
class Res:
    kind: str  # dataset | model | modelserver | notebook
    name: str
    image: str | None = None
    mode: str = ""  # Models: loader | trainer | url
    params: dict[str, Any] = field(default_factory=dict)
    url: str | None = None  # url Models
    namespace: str = "default"
    # References, as (name, namespace) of the referenced resource:
    base: Key | None = None  # trainer.baseModel (a Model)
    dataset: Key | None = None  # trainer.dataset / Notebook dataset (a Dataset)
    model: Key | None = None  # ModelServer model / Notebook sourceModel (a Model)
    replicas: int = 1
    bits: int = 16
    context: str | None = None  # a local build context (a directory of CONTEXTS) for the image
    lifecycle: dict[str, Any] = field(default_factory=dict)
    sensitive: list[str] = field(default_factory=list)  # param keys marked sensitive
    retries: int = 0  # spec.retries of a job (a Dataset, a loader or trainer Model)

    @property
    def key(self) -> Key:
        return (self.name, self.namespace)

    @property
    def address(self) -> str:
        return address(self.kind, self.key)

    @property
    def has_params(self) -> bool:
        return not (self.kind == "model" and self.mode == "url")

    @property
    def params_path(self) -> str:
        """Where its params are: spec.loader.params, spec.trainer.params or spec.params."""
        if self.kind == "dataset" or (self.kind == "model" and self.mode == "loader"):
            return "spec.loader.params"
        return "spec.trainer.params" if self.kind == "model" else "spec.params"

    @property
    def runs_job(self) -> bool:
        """A Dataset or a loader/trainer Model: ``spec.retries`` applies."""
        return self.kind == "dataset" or (self.kind == "model" and self.mode != "url")

    @property
    def protected(self) -> bool:
        return bool(self.lifecycle.get("preventDestroy"))

    def refs(self) -> list[str]:
        out = []
        if self.base is not None:
            out.append(address("model", self.base))
        if self.dataset is not None:
            out.append(address("dataset", self.dataset))
        if self.model is not None:
            out.append(address("model", self.model))
        return out


def build_address(context: str) -> str:
    """The documented rule (``engine.builds``): a build is named by its context's path relative
    to the configuration's root — the path itself when it is a valid name of at most 40
    characters, else its slug and a hash of the path. Nothing else names it."""
    if len(context) <= 40 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", context):
        return f"build.{context}"
    slug = re.sub(r"[^a-z0-9-]+", "-", context.lower()).strip("-")[:40].strip("-") or "context"
    suffix = hashlib.sha256(("local\0" + context).encode()).hexdigest()[:6]
    return f"build.{slug}-{suffix}"


def address(kind: str, key: Key) -> str:
    """The engine's address string: the namespace is written only when it is not the default."""
    name, namespace = key
    return f"{kind}.{name}" if namespace == "default" else f"{namespace}/{kind}.{name}"


@dataclass
class Cfg:
    resources: list[Res] = field(default_factory=list)

    def copy(self) -> Cfg:
        return copy.deepcopy(self)

    @property
    def addresses(self) -> set[str]:
        """Every address the engine plans: the resources and the builds of their contexts."""
        return {r.address for r in self.resources} | self.builds()

    def builds(self) -> set[str]:
        return {build_address(r.context) for r in self.resources if r.context is not None}

    def get(self, address: str) -> Res:
        return next(r for r in self.resources if r.address == address)

    def of_kind(self, kind: str, mode: str | None = None) -> list[Res]:
        return [r for r in self.resources if r.kind == kind and (mode is None or r.mode == mode)]

    def keys(self, kind: str) -> set[Key]:
        return {r.key for r in self.resources if r.kind == kind}

    def deps(self) -> dict[str, set[str]]:
        """address -> the addresses it references directly (its build included)."""
        out = {r.address: set(r.refs()) for r in self.resources}
        for r in self.resources:
            if r.context is not None:
                out[r.address].add(build_address(r.context))
        return {**{b: set() for b in self.builds()}, **out}

    def dependents(self, address: str) -> set[str]:
        """Everything that (transitively) depends on ``address``."""
        deps = self.deps()
        out: set[str] = set()
        frontier = {address}
        while frontier:
            frontier = {a for a, ds in deps.items() if ds & frontier and a not in out}
            out |= frontier
        return out

    def ancestors(self, address: str) -> set[str]:
        deps = self.deps()
        out: set[str] = set()
        frontier = set(deps[address])
        while frontier:
            out |= frontier
            frontier = {d for a in frontier for d in deps.get(a, ())} - out
        return out

    def leaves(self) -> list[Res]:
        referenced = {d for ds in self.deps().values() for d in ds}
        return [r for r in self.resources if r.address not in referenced]


# -- rendering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    ref_map: bool = False  # baseModel: {name: x} instead of baseModel: x
    server_alias: bool = False  # kind: Server
    explicit_defaults: bool = False  # write replicas: 1, quantization: {bits: 16}, env: {} ...
    explicit_namespace: bool = False  # write namespace: default on resources in it
    # Write a reference's namespace even when it is the referrer's own (the default).
    explicit_ref_namespace: bool = False
    flow: bool = False  # flow-style YAML
    sort_keys: bool = False
    shuffle_seed: int | None = None  # document order


DEFAULT_STYLE = Style()
DEFAULT_RESOURCES = {"cpu": 2, "memory": 10, "disk": 10}


def document(r: Res, style: Style = DEFAULT_STYLE) -> dict[str, Any]:
    def ref(key: Key | None) -> Any:
        assert key is not None
        name, namespace = key
        if namespace != r.namespace or style.explicit_ref_namespace:
            return {"name": name, "namespace": namespace}
        return {"name": name} if style.ref_map else name

    explicit = style.explicit_defaults
    spec: dict[str, Any] = {}
    if r.image is not None:
        spec["container"] = {"image": r.image}
        if r.context is not None:
            spec["container"] = {"local": {"path": f"./{r.context}"}, "command": ["run"]}
        if explicit:
            spec["container"]["env"] = {}
    kind = DOC_KIND[r.kind]
    if r.kind == "dataset":
        if r.params or explicit:
            spec["loader"] = {"params": r.params}
    elif r.kind == "model":
        if r.mode == "url":
            spec["url"] = r.url
        elif r.mode == "loader":
            spec["loader"] = {"params": r.params} if (r.params or explicit) else {}
        else:
            trainer: dict[str, Any] = {}
            if r.base is not None:
                trainer["baseModel"] = ref(r.base)
            trainer["dataset"] = ref(r.dataset)
            if r.params or explicit:
                trainer["params"] = r.params
            spec["trainer"] = trainer
    elif r.kind == "modelserver":
        if style.server_alias:
            kind = "Server"
        spec["model"] = ref(r.model)
        if r.bits != 16 or explicit:
            spec["quantization"] = {"bits": r.bits}
        if r.replicas != 1 or explicit:
            spec["replicas"] = r.replicas
        if r.params or explicit:
            spec["params"] = r.params
    else:
        if r.model is not None:
            spec["sourceModel"] = ref(r.model)
        if r.dataset is not None:
            spec["dataset"] = ref(r.dataset)
        if r.params or explicit:
            spec["params"] = r.params
        if explicit:
            spec["suspend"] = False
    if explicit:
        spec["resources"] = dict(DEFAULT_RESOURCES)
    if r.runs_job and (r.retries or explicit):
        spec["retries"] = r.retries
    doc: dict[str, Any] = {"kind": kind, "name": r.name}
    if r.namespace != "default" or style.explicit_namespace:
        doc["namespace"] = r.namespace
    doc["spec"] = spec
    if r.lifecycle:
        doc["lifecycle"] = r.lifecycle
    if r.sensitive:
        doc["sensitive"] = [f"{r.params_path}.{k}" for k in r.sensitive]
    return doc


def render(cfg: Cfg, style: Style = DEFAULT_STYLE) -> str:
    docs = [document(r, style) for r in cfg.resources]
    if style.shuffle_seed is not None:
        random.Random(style.shuffle_seed).shuffle(docs)
    # A JSON round trip gives every document fresh objects, so PyYAML writes no anchors.
    docs = json.loads(json.dumps(docs))
    text = yaml.safe_dump_all(
        docs,
        sort_keys=style.sort_keys,
        default_flow_style=style.flow,
        allow_unicode=True,
        width=80,
    )
    # Sanity of the generator, not of the engine: the text means exactly these documents.
    assert same(list(yaml.safe_load_all(text)), docs), text
    return text


def same(a: Any, b: Any) -> bool:
    """Equality that tells 1, 1.0 and True apart (as canonical JSON, and so digests, do)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# -- strategies ---------------------------------------------------------------------------------

NAME_POOL = ["a", "b", "base", "squad", "tuned", "falcon-7b", "k8s-docs", "x1"]
# Local build contexts the harness creates (``make_contexts``): several share a basename.
CONTEXTS = ("app", "sub/app", "deep/sub/app", "tool", "sub/tool")
names = st.one_of(
    st.sampled_from(NAME_POOL),
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True),
)
# Mostly the default namespace, so that most references stay within one namespace.
namespaces = st.sampled_from(["default", "default", "default", "team-a", "ml"])
param_keys = st.one_of(
    st.sampled_from(["epochs", "lr", "limit", "name", "urls", "on", "null", "1", "y"]),
    st.text("abcdefxyz_-.", min_size=1, max_size=6),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10),
)
param_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(param_keys, inner, max_size=3)
    ),
    max_leaves=6,
)
params = st.dictionaries(param_keys, param_values, max_size=3)
styles = st.builds(
    Style,
    ref_map=st.booleans(),
    server_alias=st.booleans(),
    explicit_defaults=st.booleans(),
    explicit_namespace=st.booleans(),
    explicit_ref_namespace=st.booleans(),
    flow=st.booleans(),
    sort_keys=st.booleans(),
    shuffle_seed=st.none() | st.integers(0, 2**16),
)


def fresh_key(draw: Draw[Any], cfg: Cfg, kind: str) -> Key:
    """A (name, namespace) no resource of ``kind`` has (names repeat across kinds and
    namespaces, as addresses allow)."""
    taken = cfg.keys(kind)
    name: str = draw(names)
    namespace: str = draw(namespaces)
    suffix, candidate = 2, name
    while (candidate, namespace) in taken:
        candidate, suffix = f"{name}-{suffix}", suffix + 1
    return candidate, namespace


def draw_resource(draw: Draw[Any], cfg: Cfg, kind: str | None = None) -> Res:
    """A new resource that only references resources already in ``cfg``."""
    datasets = sorted(cfg.keys("dataset"))
    models = sorted(cfg.keys("model"))
    # Repeats weight the draw towards deeper graphs (trained Models, servers).
    choices = ["dataset", "dataset", "model-loader", "model-loader", "model-url", "notebook"]
    if datasets:
        choices += ["model-trainer"] * 3
    if models:
        choices += ["modelserver"] * 2
    choice = kind or draw(st.sampled_from(choices))
    base_kind, _, mode = choice.partition("-")
    name, namespace = fresh_key(draw, cfg, base_kind)
    image = draw(st.sampled_from(IMAGES[base_kind]))
    r = Res(base_kind, name, image, mode, params=draw(params), namespace=namespace)
    if r.runs_job and not draw(st.integers(0, 3)):
        r.retries = draw(st.integers(1, 3))
    if draw(st.booleans()):
        r.context = draw(st.sampled_from(CONTEXTS))
    if choice == "model-url":
        r.image = r.context = None
        r.params = {}
        r.url = draw(st.sampled_from(["gs://weights/", "https://hf.co/"])) + name
    elif choice == "model-trainer":
        r.dataset = draw(st.sampled_from(datasets))
        if models and draw(st.integers(0, 3)):  # mostly with a base model
            r.base = draw(st.sampled_from(models))
    elif choice == "modelserver":
        r.model = draw(st.sampled_from(models))
        r.replicas = draw(st.integers(0, 4))
        r.bits = draw(st.sampled_from([4, 8, 16]))
    elif choice == "notebook":
        if models and draw(st.booleans()):
            r.model = draw(st.sampled_from(models))
        if datasets and draw(st.booleans()):
            r.dataset = draw(st.sampled_from(datasets))
    return r


@st.composite
def configs(draw: Draw[Any], min_size: int = 1, max_size: int = 8, first: str | None = None) -> Cfg:
    cfg = Cfg()
    n = draw(st.integers(min_size, max_size))
    for i in range(n):
        cfg.resources.append(draw_resource(draw, cfg, first if i == 0 else None))
    return cfg


def different_params(draw: Draw[Any], old: dict[str, Any]) -> dict[str, Any]:
    """``old`` with one key set to a value that differs (as JSON) from the old one."""
    new = dict(old)
    key = draw(st.sampled_from(sorted(old)) | param_keys) if old else draw(param_keys)
    value = draw(param_values)
    if key in old and same(old[key], value):
        value = [value]
    new[key] = value
    return new


def make_contexts(root: Any) -> None:
    """Create every directory of ``CONTEXTS`` under ``root`` (a ``Path``), each with its own
    content."""
    for rel in CONTEXTS:
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel / "run").write_text(f"#!/bin/sh\necho {rel}\n")


def metadata_keys(r: Res) -> list[str]:
    """Param keys that a ``sensitive:`` or ``ignoreChanges`` path can name."""
    if not r.has_params:
        return []
    return sorted(k for k in r.params if k and "." not in k and "[" not in k)


def applicable_edits(cfg: Cfg) -> list[str]:
    out = ["add", "lifecycle"] if cfg.resources else ["add"]
    if any(r.runs_job for r in cfg.resources):
        out.append("retries")
    if any(r.has_params for r in cfg.resources):
        out.append("param")
    if any(metadata_keys(r) for r in cfg.resources):
        out.append("sensitive")
    if [r for r in cfg.leaves() if not r.protected]:
        out.append("remove-leaf")
    if cfg.of_kind("modelserver"):
        out.append("server")
    if [r for r in cfg.resources if not r.protected]:
        out.append("rename")
    if cfg.of_kind("model", "trainer") and len(cfg.of_kind("dataset")) >= 2:
        out.append("retarget")
    return out


def draw_edit(draw: Draw[Any], cfg: Cfg) -> tuple[str, Cfg]:
    """One random valid edit of ``cfg``: (description, the edited copy)."""
    new = cfg.copy()
    edit = draw(st.sampled_from(applicable_edits(cfg)))
    if edit == "add":
        r = draw_resource(draw, new)
        new.resources.append(r)
        return f"add {r.address}", new
    if edit == "param":
        r = draw(st.sampled_from([r for r in new.resources if r.has_params]))
        r.params = different_params(draw, r.params)
        return f"change params of {r.address}", new
    if edit in ("lifecycle", "sensitive", "retries"):
        return draw_metadata_edit(draw, new, edit)
    if edit == "remove-leaf":
        r = draw(st.sampled_from([r for r in new.leaves() if not r.protected]))
        new.resources.remove(r)
        return f"remove {r.address}", new
    if edit == "server":
        r = draw(st.sampled_from(new.of_kind("modelserver")))
        if draw(st.booleans()):
            r.replicas = draw(st.integers(0, 4).filter(lambda n: n != r.replicas))
            return f"{r.address} replicas -> {r.replicas}", new
        r.bits = draw(st.sampled_from([b for b in (4, 8, 16) if b != r.bits]))
        return f"{r.address} quantization -> {r.bits}", new
    if edit == "rename":  # a new name and/or namespace; references follow
        r = draw(st.sampled_from([r for r in new.resources if not r.protected]))
        old_address, old_key = r.address, r.key
        r.name, r.namespace = fresh_key(draw, new, r.kind)
        for other in new.resources:
            if r.kind == "dataset" and other.dataset == old_key:
                other.dataset = r.key
            if r.kind == "model":
                if other.base == old_key:
                    other.base = r.key
                if other.model == old_key:
                    other.model = r.key
        return f"rename {old_address} -> {r.address}", new
    assert edit == "retarget"
    r = draw(st.sampled_from(new.of_kind("model", "trainer")))
    r.dataset = draw(st.sampled_from(sorted(new.keys("dataset") - {r.dataset or ("", "")})))
    return f"{r.address} trains on {address('dataset', r.dataset)}", new


def draw_metadata_edit(draw: Draw[Any], new: Cfg, edit: str) -> tuple[str, Cfg]:
    """A ``lifecycle``, ``sensitive:`` or ``spec.retries`` edit of one resource of ``new``
    (edited in place): none of them changes what a resource makes."""
    if edit == "retries":
        r = draw(st.sampled_from([r for r in new.resources if r.runs_job]))
        r.retries = draw(st.integers(0, 3).filter(lambda n: n != r.retries))
        return f"{r.address} retries -> {r.retries}", new
    if edit == "sensitive":
        r = draw(st.sampled_from([r for r in new.resources if metadata_keys(r)]))
        k = draw(st.sampled_from(metadata_keys(r)))
        r.sensitive = [x for x in r.sensitive if x != k] if k in r.sensitive else [*r.sensitive, k]
        return f"{r.address} sensitive -> {r.sensitive}", new
    r = draw(st.sampled_from(new.resources))
    what = draw(st.sampled_from(["preventDestroy", "retainArtifacts", "maxCost", "ignoreChanges"]))
    lc = r.lifecycle
    if what == "ignoreChanges":
        keys = metadata_keys(r)
        paths = [f"{r.params_path}.{k}" for k in keys] or ["spec.resources.cpu"]
        path = draw(st.sampled_from(paths))
        ignored = [p for p in lc.get("ignoreChanges", []) if p != path]
        if path not in lc.get("ignoreChanges", []):
            ignored.append(path)
        lc["ignoreChanges"] = ignored
    elif what == "maxCost":
        lc["maxCost"] = None if lc.get("maxCost") else 1_000_000
    else:
        lc[what] = not lc.get(what)
    r.lifecycle = {k: v for k, v in lc.items() if v}
    return f"{r.address} lifecycle -> {r.lifecycle}", new


def unprotected(cfg: Cfg) -> tuple[str, Cfg]:
    """``cfg`` without ``preventDestroy`` anywhere (to destroy it)."""
    new = cfg.copy()
    for r in new.resources:
        r.lifecycle.pop("preventDestroy", None)
    return "lift preventDestroy", new
