"""Plans for the renderer tests: real ones made by the planner (through the in-memory
``Harness``) and a large synthetic one, plus a structural check of GitHub Markdown."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from substratus.engine.address import Address
from substratus.engine.plan import (
    Action,
    Drift,
    DriftStatus,
    Input,
    Mode,
    Plan,
    Reason,
    ResourceChange,
)
from substratus.engine.plan import (
    ReasonCode as Why,
)
from tests.support.engine import Harness

SECRET = "hunter2-secret"

PIPELINE = """\
kind: Dataset
name: squad
spec:
  container: {local: {path: ./loader}, command: [python3, load.py]}
  loader: {params: {urls: "https://example.com/squad.jsonl", limit: LIMIT, token: TOKEN}}
sensitive: [spec.loader.params.token]
---
kind: Model
name: base
spec:
  container: {image: substratusai/model-loader-huggingface}
  loader: {params: {name: facebook/opt-125m}}
---
kind: Model
name: tuned
spec:
  container: {image: substratusai/model-trainer-huggingface}
  trainer:
    baseModel: base
    dataset: squad
    params: {epochs: 1, prompt: PROMPT}
    resources: {gpu: {type: nvidia-l4, count: 1}}
---
kind: ModelServer
name: tuned
spec:
  container: {image: substratusai/model-server-basaran}
  model: tuned
  quantization: {bits: 8}
"""
EXTRA = """\
---
kind: Notebook
name: dev
spec:
  container: {image: substratusai/base}
  sourceModel: tuned
---
kind: ModelServer
name: old
spec:
  container: {image: substratusai/model-server-basaran}
  model: base
"""
# A value that tries to end the diff block, the <details> and the comment's HTML, and to ping.
NASTY = '"```\\n</details></summary>\\n<script>alert(1)</script> @octo-org/admins ~~x~~ $x$"'


def pipeline(limit: int = 1000, token: str = SECRET, prompt: str = '"Answer: "') -> str:
    return PIPELINE.replace("LIMIT", str(limit)).replace("TOKEN", token).replace("PROMPT", prompt)


def _harness(tmp_path: Path) -> Harness:
    (tmp_path / "loader").mkdir(parents=True, exist_ok=True)
    return Harness(tmp_path)


def _normalised(plan: Plan, tmp_path: Path) -> Plan:
    """Make a planner's plan independent of the machine (build paths, version)."""
    plan = replace(plan, substratus_version="0.0.0-test")
    for c in plan.resource_changes:
        for spec in (c.before, c.after):
            if spec and isinstance(spec.get("path"), str):
                spec["path"] = spec["path"].replace(str(tmp_path), "/project")
    return plan


def small_plan(tmp_path: Path) -> Plan:
    """The quickstart shape: a build, a dataset, two models and a server, all created."""
    return _normalised(_harness(tmp_path).plan(pipeline()), tmp_path)


def destructive_plan(tmp_path: Path) -> Plan:
    """Replacements (changed params, a rotated secret, --replace), deletes, drift, and a value
    that tries to break out of the Markdown."""
    h = _harness(tmp_path)
    assert h.apply(h.plan(pipeline() + EXTRA)).ok
    h.record_durations({"model.tuned": 5400.0}, default=300.0)
    h.runtime.missing.add("modelserver.tuned")
    plan = h.plan(
        pipeline(limit=5000, token="rotated-" + SECRET, prompt=NASTY),
        replace=[Address("model", "base")],
    )
    return _normalised(plan, tmp_path)


def no_changes_plan(tmp_path: Path) -> Plan:
    h = _harness(tmp_path)
    assert h.apply(h.plan(pipeline())).ok
    return _normalised(h.plan(pipeline()), tmp_path)


def _change(
    address: str, action: Action, reason: Reason, before: Any, after: Any, deps: list[str]
) -> ResourceChange:
    namespace, _, local = address.rpartition("/")
    kind, name = local.split(".")
    return ResourceChange(
        address, kind, namespace or "default", name, action, [reason], before, after,
        dependencies=[Input(d) for d in deps],
    )  # fmt: skip


def large_plan(
    creates: int = 2700, updates: int = 200, replaces: int = 150, deletes: int = 100
) -> Plan:
    """A synthetic plan of 3,150 resources (by default): far over GitHub's comment limit."""
    changes = [
        _change(f"dataset.d{i:04}", Action.CREATE, Reason(Why.NEW, "not in the state yet"), None,
                {"loader": {"params": {"limit": i, "urls": f"https://example.com/{i}.jsonl"}}}, [])
        for i in range(creates)
    ]  # fmt: skip
    changes += [
        _change(f"team-b/modelserver.s{i:04}", Action.UPDATE,
                Reason(Why.FIELD_CHANGED, "spec.replicas changed", "spec.replicas"),
                {"replicas": 1}, {"replicas": 2}, [f"model.m{i:04}"])
        for i in range(updates)
    ]  # fmt: skip
    changes += [
        _change(f"model.m{i:04}", Action.REPLACE,
                Reason(Why.DEPENDENCY_CHANGED, f"dataset.d{i:04} changed", None,
                       f"dataset.d{i:04}"),
                {"x": 1}, {"x": 1}, [f"dataset.d{i:04}"])
        for i in range(replaces)
    ]  # fmt: skip
    changes += [
        _change(f"notebook.n{i:04}", Action.DELETE,
                Reason(Why.NOT_IN_CONFIG, f"notebook.n{i:04} is not in the configuration"),
                {"suspend": False}, None, [])
        for i in range(deletes)
    ]  # fmt: skip
    drift = [
        Drift(f"notebook.n{i:04}", DriftStatus.DEGRADED, "the pod is not ready") for i in range(20)
    ]
    return Plan(Mode.NORMAL, changes, drift, substratus_version="0.0.0-test")


_FENCE = re.compile(r"^(`{3,})(\S*)$")
_TAG = re.compile(r"</?details[ >]")


def layout_problems(text: str) -> list[str]:
    """Where ``text`` would not render as laid out: unclosed fences, unbalanced ``<details>``,
    raw HTML from values outside code blocks."""
    problems: list[str] = []
    fence: str | None = None
    depth = 0
    for n, line in enumerate(text.splitlines(), start=1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None:
            if line.startswith(fence) and line.strip("`") == "" and len(line) >= len(fence):
                fence = None
        else:
            for tag in _TAG.findall(line):
                depth += -1 if tag.startswith("</") else 1
                if depth < 0:
                    problems.append(f"line {n}: </details> without <details>")
            if "<script" in line or ("<b>" in line and "<summary>" not in line):
                problems.append(f"line {n}: raw HTML outside a code block: {line!r}")
    if fence is not None:
        problems.append(f"a {fence} code block is never closed")
    if depth:
        problems.append(f"{depth} <details> never closed")
    return problems


def mermaid_block(text: str) -> str:
    m = re.search(r"^(`{3,})mermaid\n(.*?)\n\1$", text, flags=re.S | re.M)
    assert m, "no mermaid block"
    return m.group(2) + "\n"
