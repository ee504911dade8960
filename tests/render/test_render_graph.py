"""Graphs as text (``engine.render_graph``): Mermaid and DOT, ids, colours, the graphs of a
plan and of a configuration, and the structural Mermaid check the Markdown tests rely on."""

from __future__ import annotations

import re
from pathlib import Path

from substratus.engine.config import load_config
from substratus.engine.plan import ACTION_LOOK, Action, Input, Mode, Plan, ResourceChange
from substratus.engine.render_graph import (
    changes_graph,
    check_mermaid,
    config_graph,
    dot,
    mermaid,
    node_ids,
    plan_graph,
)

NODES = ["model.tuned", "dataset.squad", "team-b/model.x", "build.images-loader"]
EDGES = [
    ("dataset.squad", "model.tuned"),
    ("build.images-loader", "dataset.squad"),
    ("team-b/model.x", "model.tuned"),
]
ACTIONS = {
    "dataset.squad": Action.CREATE,
    "model.tuned": Action.REPLACE,
    "team-b/model.x": Action.READ,
    "build.images-loader": Action.NOOP,
}


def test_mermaid_is_sorted_with_safe_ids_and_labels() -> None:
    text = mermaid(NODES, EDGES, ACTIONS)
    assert text == (
        "flowchart LR\n"
        '  n0["build.images-loader"]\n'
        '  n1["+ dataset.squad"]\n'
        '  n2["-/+ model.tuned"]\n'
        '  n3["#60;= team-b/model.x"]\n'
        "  n0 --> n1\n"
        "  n1 --> n2\n"
        "  n3 --> n2\n"
        "  classDef create fill:#dafbe1,stroke:#1a7f37,color:#1f2328\n"
        "  class n1 create\n"
        "  classDef replace fill:#fff1e5,stroke:#bc4c00,color:#1f2328\n"
        "  class n2 replace\n"
        "  classDef read fill:#ddf4ff,stroke:#0969da,color:#1f2328\n"
        "  class n3 read\n"
        "  classDef noop fill:#f6f8fa,stroke:#6e7781,color:#1f2328\n"
        "  class n0 noop\n"
    )
    assert check_mermaid(text) == []


def test_output_does_not_depend_on_input_order() -> None:
    for render in (mermaid, dot):
        a = render(NODES, EDGES, ACTIONS)
        b = render(list(reversed(NODES)), list(reversed(EDGES)), dict(reversed(ACTIONS.items())))
        assert a == b


def test_ids_are_stable_and_cover_edge_ends() -> None:
    ids = node_ids(["b", "a"], [("a", "c")])
    assert ids == {"a": "n0", "b": "n1", "c": "n2"}
    assert node_ids(["c", "b", "a"]) == ids
    assert "n2" in mermaid(["a"], [("a", "b"), ("b", "c")])


def test_every_action_has_its_own_colour_and_symbol() -> None:
    fills = {look.fill for look in ACTION_LOOK.values()}
    assert len(fills) == len(Action)
    nodes = [f"model.m{i}" for i in range(len(Action))]
    actions = dict(zip(nodes, Action, strict=True))
    text = mermaid(nodes, [], actions)
    assert check_mermaid(text) == []
    for look, action in ((ACTION_LOOK[a], a) for a in Action):
        assert f"classDef {look.graph_class} fill:{look.fill},stroke:{look.stroke}," in text
        member = next(n for n, a in actions.items() if a is action)
        assert f"class {node_ids(nodes)[member]} {look.graph_class}\n" in text
    assert '"+ model.m0"' in text and '"~ model.m1"' in text and '"- model.m3"' in text
    assert '"model.m5"' in text  # no-op: the address alone, coloured grey


def test_labels_cannot_break_out() -> None:
    nasty = 'model.a"] --> x[" <b>&#9829;`'
    text = mermaid([nasty, "model.b"], [(nasty, "model.b")])
    assert check_mermaid(text) == []
    assert '"]' not in text.splitlines()[1][:-2]
    assert "#34;" in text and "#60;" in text and "#35;" in text
    graph = dot([nasty], [], {nasty: Action.DELETE})
    assert 'label="- model.a\\"] --> x[\\" <b>&amp;#9829;`"' in graph


def test_without_actions_there_are_no_classes() -> None:
    text = mermaid(NODES, EDGES)
    assert "class" not in text and '"dataset.squad"' in text
    assert check_mermaid(text) == []


def test_dot() -> None:
    text = dot(NODES, EDGES, ACTIONS)
    assert text.startswith('digraph "substratus" {\n  rankdir=LR;\n')
    assert '  n1 [label="+ dataset.squad", fillcolor="#dafbe1", color="#1a7f37"];\n' in text
    assert '  n3 [label="<= team-b/model.x", fillcolor="#ddf4ff", color="#0969da"];\n' in text
    assert "  n0 -> n1;\n  n1 -> n2;\n  n3 -> n2;\n}\n" in text
    assert text.count("{") == text.count("}")


def test_check_mermaid_finds_problems() -> None:
    good = mermaid(NODES, EDGES, ACTIONS)
    assert check_mermaid(good.replace("flowchart LR", "graph LR"))
    assert check_mermaid(good + "  n0 --> n9\n") == ["line 17: n9 is not a defined node"]
    assert check_mermaid(good + "  class n0 nope\n") == ["line 17: class nope has no classDef"]
    assert check_mermaid(good.replace('n0["build', 'n0["bu"ild'))
    assert check_mermaid(good.replace('n1["+ dataset.squad"]', 'n1["+ dataset.squad"')) != []
    assert check_mermaid(good + "  click n0 call x()\n") != []
    assert check_mermaid(good + '  n0["again"]\n') == ["line 17: node n0 defined twice"]


def _change(address: str, action: Action, depends_on: list[str]) -> ResourceChange:
    kind, name = address.rsplit("/", 1)[-1].split(".")
    deps = [Input(d) for d in depends_on]
    return ResourceChange(address, kind, "default", name, action, dependencies=deps)


def _mixed_plan() -> Plan:
    return Plan(
        Mode.NORMAL,
        [
            _change("dataset.far", Action.NOOP, []),
            _change("dataset.squad", Action.NOOP, ["dataset.far"]),
            _change("model.ext", Action.READ, []),
            _change("model.tuned", Action.REPLACE, ["dataset.squad", "model.ext"]),
            _change("modelserver.tuned", Action.UPDATE, ["model.tuned"]),
            _change("notebook.unrelated", Action.NOOP, ["model.ext"]),
            _change("modelserver.old", Action.DELETE, ["model.gone"]),
        ],
    )


def test_plan_graph_shows_every_resource_and_every_edge_between_them() -> None:
    plan = _mixed_plan()
    nodes, edges, actions = plan_graph(plan)
    assert nodes == sorted(c.address for c in plan.resource_changes)
    assert edges == [
        ("dataset.far", "dataset.squad"),
        ("dataset.squad", "model.tuned"),
        ("model.ext", "model.tuned"),
        ("model.ext", "notebook.unrelated"),
        ("model.tuned", "modelserver.tuned"),
    ]  # model.gone is not in the plan: no edge to nowhere
    assert actions == {c.address: c.action for c in plan.resource_changes}
    text = mermaid(nodes, edges, actions)
    assert check_mermaid(text) == []
    assert '"dataset.far"' in text and '"#60;= model.ext"' in text  # no-op and read drawn
    assert "class n0,n1,n6 noop" in text and "class n2 read" in text
    unchanged = Plan(Mode.NORMAL, [_change("dataset.far", Action.NOOP, [])])
    assert plan_graph(unchanged) == (["dataset.far"], [], {"dataset.far": Action.NOOP})


def test_changes_graph_keeps_changes_and_their_direct_dependencies() -> None:
    nodes, edges, actions = changes_graph(_mixed_plan())
    assert nodes == [
        "dataset.squad",
        "model.ext",
        "model.tuned",
        "modelserver.old",
        "modelserver.tuned",
    ]
    assert edges == [
        ("dataset.squad", "model.tuned"),
        ("model.ext", "model.tuned"),
        ("model.tuned", "modelserver.tuned"),
    ]
    assert actions["model.ext"] is Action.READ and actions["dataset.squad"] is Action.NOOP
    assert check_mermaid(mermaid(nodes, edges, actions)) == []


def test_config_graph(tmp_path: Path) -> None:
    (tmp_path / "loader").mkdir()
    (tmp_path / "substratus.yaml").write_text(
        """\
kind: Dataset
name: squad
spec:
  container: {local: {path: ./loader}, command: [python3, load.py]}
---
kind: Model
name: tuned
spec:
  container: {image: substratusai/model-trainer-huggingface}
  trainer: {baseModel: {name: base, namespace: team-b}, dataset: squad}
"""
    )
    nodes, edges = config_graph(load_config([str(tmp_path)]))
    assert nodes == ["build.loader", "dataset.squad", "model.tuned", "team-b/model.base"]
    assert edges == [
        ("build.loader", "dataset.squad"),
        ("dataset.squad", "model.tuned"),
        ("team-b/model.base", "model.tuned"),
    ]
    text = mermaid(nodes, edges)
    assert check_mermaid(text) == []
    assert re.search(r'n3\["team-b/model\.base"\]', text)
