"""YAML documents with line numbers.

``load_documents(text, file)`` parses multi-document YAML and converts each document to plain
Python values while remembering the line of every key, so later validation can say
``file:line`` for any field path. No other I/O.

Only what round-trips through JSON is accepted; everything else is an error at its line:

- duplicate keys (PyYAML would silently keep the last one);
- mapping keys that are not strings, including YAML 1.1 booleans such as ``on:`` or ``yes:``
  and numbers (quote them);
- ``.nan``, ``.inf`` and numbers too large for a double;
- explicit tags other than the core ones, nesting deeper than ``MAX_DEPTH``, recursive aliases
  (``engine.composer``);
- aliases that expand to more than ``ALIAS_BUDGET`` nodes in one file ("billion laughs").

Merge keys (``<<: *defaults``) work as in YAML 1.1: keys written in the mapping win over merged
ones, and earlier merged mappings over later ones. Syntax errors become diagnostics with the line
PyYAML reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from substratus.engine.composer import MAX_DEPTH, Composer, Refused, too_deep
from substratus.engine.diagnostic import Diagnostic, Location
from substratus.engine.yamlevents import read_plain

FieldPath = tuple[str | int, ...]

ALIAS_BUDGET = 10_000  # nodes that aliases and merge keys may add to one file

# libyaml's parser when PyYAML was built with it (it keeps marks, so lines are exact).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def path_str(path: FieldPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


@dataclass
class Document:
    file: str
    line: int  # first line of the document
    data: Any
    lines: dict[FieldPath, int] = field(default_factory=dict)

    def line_of(self, path: FieldPath) -> int:
        """The line of the longest known prefix of ``path`` (or the document's first line)."""
        for n in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:n]))
            if line is not None:
                return line
        return self.line

    def source(self, path: FieldPath = ()) -> Location:
        return Location(self.file, self.line_of(path))


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Converter:
    """Node graph → plain values of one document; ``budget`` is shared by a file's documents."""

    def __init__(self, file: str, budget: list[int]) -> None:
        self.file = file
        self.budget = budget
        self.lines: dict[FieldPath, int] = {}
        self.errors: list[Diagnostic] = []
        self.seen: set[int] = set()  # ids of nodes converted once (later visits are aliases)
        self._constructor = yaml.constructor.SafeConstructor()

    def error(self, summary: str, detail: str, line: int, path: FieldPath) -> None:
        self.errors.append(
            Diagnostic.error(
                summary, detail, source=Location(self.file, line), path=path_str(path) or None
            )
        )

    def convert(self, node: yaml.Node, path: FieldPath, blame: int = 0) -> Any:
        """``blame``: the line of the nearest node written where it stands (not via an alias)."""
        if id(node) in self.seen:
            self.budget[0] -= 1
            if self.budget[0] < 0:
                raise Refused(
                    blame,
                    "Aliases expand too much",
                    f"The aliases in this file expand to more than {ALIAS_BUDGET} nodes; "
                    "write the values out, or use fewer levels of aliases.",
                )
        else:
            self.seen.add(id(node))
            blame = _line(node)
        self.lines.setdefault(path, _line(node))
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and len(path) >= MAX_DEPTH:
            raise too_deep(blame)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, blame)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i), blame) for i, item in enumerate(node.value)]
        if node.tag == _STR_TAG:
            return node.value  # the common case, without the constructor's bookkeeping
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: FieldPath) -> Any:
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            self.error(
                "Invalid value", f"{exc}. Quote the value to keep it as text.", _line(node), path
            )
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.error(
                f"Not a finite number: {node.value}",
                "Values must survive a trip through JSON, which has no NaN or infinity (and "
                "numbers beyond ±1.8e308 overflow to infinity). Use a finite number, or quote "
                "the value to pass it as text.",
                _line(node),
                path,
            )
            return None
        return value

    def _mapping(self, node: yaml.MappingNode, path: FieldPath, blame: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _MERGE_TAG:
                merges.append((key_node, value_node))
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            child = (*path, key)
            if key in out:
                self.error(
                    f"Duplicate key {key!r}",
                    f"{key!r} is already set on line {self.lines[child]}; remove one of them.",
                    _line(key_node),
                    child,
                )
                continue
            self.lines[child] = _line(key_node)
            out[key] = self.convert(value_node, child, blame)
        for key_node, value_node in merges:
            self._merge(out, key_node, value_node, path, blame)
        return out

    def _key(self, node: yaml.Node, path: FieldPath) -> str | None:
        """The key of a mapping entry if it is a string; else an error and None."""
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
            return str(node.value)
        if isinstance(node, yaml.ScalarNode):
            kind = str(node.tag).rsplit(":", 1)[-1]
            read_as = {"bool": "a boolean", "int": "a number", "float": "a number"}.get(kind, kind)
            detail = f"YAML reads {node.value!r} as {read_as}, not as text"
            if kind == "bool":
                detail += " (YAML 1.1 reads on/off/yes/no as booleans)"
            detail += f'. Mapping keys must be strings: write it in quotes, "{node.value}".'
            summary = f"Key {node.value!r} is not a string"
        else:
            summary = "Key is not a string"
            detail = "Mapping keys must be plain strings, not lists or mappings."
        self.error(summary, detail, _line(node), path)
        return None

    def _merge(
        self,
        out: dict[str, Any],
        key_node: yaml.Node,
        value_node: yaml.Node,
        path: FieldPath,
        blame: int,
    ) -> None:
        """Add the keys of a ``<<`` merge that ``out`` does not set itself."""
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self.error(
                    "Invalid merge key",
                    "<< merges a mapping or a list of mappings (usually aliases such as "
                    "*defaults).",
                    _line(key_node),
                    path,
                )
                return
            kept, self.lines = self.lines, {}
            try:
                merged = self.convert(source, path, blame)
            finally:
                found, self.lines = self.lines, kept
            for key, value in merged.items():
                if key not in out:
                    out[key] = value
                    child = (*path, key)
                    for p, line in found.items():
                        if p[: len(child)] == child:
                            self.lines.setdefault(p, line)


def load_documents(text: str, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """Parse every document of ``text``; returns the documents and any diagnostics.

    Most files are read in one pass over the parser's events (``engine.yamlevents``); a file
    with anything that pass leaves to this one (aliases, merge keys, tags, errors…) is read
    again here, with the same result for everything the fast pass accepts."""
    plain = read_plain(text)
    if plain is not None:
        return [Document(file, line, data, lines) for line, data, lines in plain], []
    return _load_all(text, file)


def _load_all(text: str, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """``load_documents`` through ``engine.composer`` and ``_Converter``: every check."""
    docs: list[Document] = []
    errors: list[Diagnostic] = []
    budget = [ALIAS_BUDGET]
    loader = _Loader(text)
    try:
        for node in Composer(loader).documents():
            if node is None:
                continue
            conv = _Converter(file, budget)
            data = conv.convert(node, ())
            errors.extend(conv.errors)
            docs.append(Document(file, _line(node), data, conv.lines))
    except Refused as exc:
        errors.append(Diagnostic.error(exc.summary, exc.detail, source=Location(file, exc.line)))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        errors.append(
            Diagnostic.error(
                "Malformed YAML",
                f"{problem}{context}. Fix the syntax at this line.",
                source=Location(file, line),
            )
        )
    except yaml.YAMLError as exc:
        errors.append(Diagnostic.error("Malformed YAML", str(exc), source=Location(file)))
    finally:
        loader.dispose()
    return docs, list(dict.fromkeys(errors))  # a merged mapping's errors are found twice
