"""``engine.checks.check_cycles``: the same diagnostics as ``engine.graph.build_graph`` (which
it asks only when ``graphlib`` finds a cycle), and nothing for a configuration without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from substratus.engine.checks import check_cycles
from substratus.engine.config import load_config
from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.graph import build_graph

MODEL = """---
kind: Model
name: {name}
spec:
  container: {{local: {{path: ./t}}, command: ["python3", "train.py"]}}
  trainer: {{baseModel: {base}, dataset: d}}
"""
DATASET = """kind: Dataset
name: d
spec:
  container: {local: {path: ./t}, command: ["python3", "train.py"]}
"""


def configured(tmp_path: Path, models: dict[str, str]) -> Path:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "train.py").write_text("print(1)\n")
    text = DATASET + "".join(MODEL.format(name=n, base=b) for n, b in models.items())
    (tmp_path / "a.yaml").write_text(text)
    return tmp_path


def test_a_cycle_is_reported_as_build_graph_reports_it(tmp_path: Path) -> None:
    cfg = load_config([str(configured(tmp_path, {"a": "b", "b": "c", "c": "a", "x": "a"}))])
    with pytest.raises(DiagnosticError) as ours:
        check_cycles(cfg.resources)
    with pytest.raises(DiagnosticError) as graphs:
        build_graph(cfg.resources)
    assert ours.value.diagnostics == graphs.value.diagnostics
    assert "model.a → model.c → model.b → model.a" in ours.value.diagnostics[0].detail


def test_no_cycle_no_diagnostic() -> None:
    root = Path(__file__).resolve().parents[2]
    cfg = load_config([str(root / "examples" / "quickstart")])
    check_cycles(cfg.resources)
