"""The YAML loader: merge keys, lines through aliases, and its limits (engine.yamlsource)."""

from __future__ import annotations

from substratus.engine.composer import MAX_DEPTH
from substratus.engine.yamlsource import ALIAS_BUDGET, load_documents


def test_merge_keys_written_keys_win_and_earlier_merges_win() -> None:
    text = "base: &b {x: 1, y: 2}\nmore: &m {y: 9, w: 3}\nm:\n  <<: [*b, *m]\n  y: 5\n"
    (doc,), errors = load_documents(text, "f.yaml")
    assert not errors
    assert doc.data["m"] == {"y": 5, "x": 1, "w": 3}
    assert doc.lines[("m", "y")] == 5  # the written key, not the merged one
    assert doc.lines[("m", "x")] == 1  # a merged key: where the anchor wrote it


def test_a_merge_of_a_scalar_is_an_error() -> None:
    _, errors = load_documents("a: &a 1\nm: {<<: *a}\n", "f.yaml")
    assert [(e.summary, e.source.line if e.source else None) for e in errors] == [
        ("Invalid merge key", 2)
    ]


def test_the_alias_budget_is_per_file_and_errors_carry_the_line() -> None:
    anchor = "a: &a [" + ", ".join(["x"] * 99) + "]\n"
    uses = "b: [" + ", ".join(["*a"] * (ALIAS_BUDGET // 100 - 1)) + "]\n"
    docs, errors = load_documents(anchor + uses, "f.yaml")
    assert not errors and len(docs[0].data["b"]) == ALIAS_BUDGET // 100 - 1
    _, errors = load_documents(anchor + uses + "---\n" + anchor + uses + uses, "f.yaml")
    assert [e.summary for e in errors] == ["Aliases expand too much"]
    assert errors[0].source is not None and errors[0].source.line == 5


def test_the_depth_limit_counts_aliases_too() -> None:
    half = MAX_DEPTH // 2 + 1
    text = "a: &a " + "[" * half + "]" * half + "\nb: " + "[" * half + "*a" + "]" * half + "\n"
    _, errors = load_documents(text, "f.yaml")
    assert [(e.summary, e.source.line if e.source else None) for e in errors] == [
        ("Nesting too deep", 2)
    ]


def test_errors_that_do_not_stop_the_file_are_all_reported() -> None:
    _, errors = load_documents("a: .nan\non: 1\nb: 1\nb: 2\n", "f.yaml")
    assert [e.source.line if e.source else None for e in errors] == [1, 2, 4]
