"""The fast path of the YAML loader (``engine.yamlevents``) gives exactly what the full path
(``yamlsource._load_all``: composer + converter) gives, or gives up and leaves the file to it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from substratus.engine.composer import MAX_DEPTH
from substratus.engine.yamlevents import read_plain
from substratus.engine.yamlsource import _load_all, load_documents


def typed(value: Any) -> str:
    """``value`` with its types spelled out (``1 == 1.0 == True`` in Python)."""
    return json.dumps(value, default=repr) + repr([type(v).__name__ for v in _leaves(value)])


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in [k, *_leaves(v)]]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


def same_as_full_path(text: str) -> bool:
    """Assert the fast path agrees with the full path; True when it took the file."""
    plain = read_plain(text)
    full, errors = _load_all(text, "f.yaml")
    if plain is None:
        return False
    assert not errors, errors
    assert [(line, typed(data), list(lines.items())) for line, data, lines in plain] == [
        (d.line, typed(d.data), list(d.lines.items())) for d in full
    ]
    return True


PLAIN = [
    "a: 1\nb: 1.5\nc: true\nd: ~\ne: null\nf: ''\ng: \"x\"\nh: yes\ni: 0o17\nj: 0x1F\n",
    "k: 1_000\nl: +1\nm: .5\nn: 1e3\no: -0\np: on\nq: No\nr: 2024-13-45x\ns: .\nt: -x\n",
    "list:\n- 1\n- - 2\n  - [3, {x: y}]\n- {}\n- []\n-\n- |\n  block\n  text\n- >\n  folded\n",
    '# only a comment\n---\n---\na: b\n...\n---\n- x\n--- plain\n--- "quoted"\n',
    'kind: Model\nname: m\nspec:\n  container: {local: {path: ./t}, command: ["true"]}\n'
    "  trainer:\n    baseModel: b\n    params: {lr: 0.001, seed: 7, name: 'x'}\n",
    "? complex\n: value\n'quoted key': 1\n\"k2\": [a, b]\nkey with spaces: v\n",
    "a:\n  b:\n    c:\n      d: [1, [2, [3]]]\n",
    "empty:\nnested: {a: , b: }\n",
    "- ~\n- null\n- Null\n- NULL\n- true\n- True\n- TRUE\n- false\n- 12\n- -12\n- 1.0e+3\n",
]

GIVES_UP = [
    "a: &x 1\nb: *x\n",  # anchors and aliases
    "base: &b {x: 1}\nm: {<<: *b, y: 2}\n",  # merge keys
    "a: !!str 1\n",  # explicit tags
    "a: !custom 1\n",
    "a: 1\na: 2\n",  # duplicate keys
    "on: 1\n",  # a key that is not a string
    "1: x\n",
    "[a]: x\n",
    "a: .nan\n",  # not finite
    "a: 1.0e+999\n",
    "a: 2024-01-01\n",  # a timestamp
    "a: =\n",  # the value tag
    "a: [b\n",  # a syntax error
    "a: b\n  c: d\n",
    "x: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n",  # too deep
]


@pytest.mark.parametrize("text", PLAIN)
def test_plain_files_take_the_fast_path_with_the_same_result(text: str) -> None:
    assert same_as_full_path(text)


@pytest.mark.parametrize("text", GIVES_UP)
def test_anything_special_is_left_to_the_full_path(text: str) -> None:
    assert read_plain(text) is None
    # and load_documents still reports what the full path reports
    assert load_documents(text, "f.yaml") == _load_all(text, "f.yaml")


def test_the_deepest_allowed_nesting_is_read_by_the_fast_path() -> None:
    depth = MAX_DEPTH  # MAX_DEPTH collections: the innermost at depth MAX_DEPTH - 1
    assert same_as_full_path("[" * depth + "]" * depth + "\n")


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["yes", "No", "on", "~", "0x1f", "1_0", ".5", "<<", "=", "-", "2024-01-02"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=3), st.sampled_from([None, True, False]))
def test_dumped_documents_agree(docs: list[Any], flow: bool | None) -> None:
    text = yaml.safe_dump_all(docs, default_flow_style=flow, sort_keys=False)
    same_as_full_path(text)
