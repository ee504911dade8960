"""Composing YAML events into nodes, within limits.

PyYAML's composer builds the node graph of a document recursively (in C with libyaml), so a few
kilobytes of ``[[[[…`` crash the interpreter, and it accepts every tag. ``Composer`` reads the
parser's events itself and refuses, with the line, what a configuration never needs:

- nesting deeper than ``MAX_DEPTH`` collections (checked while reading, so the rest of a hostile
  file is never even parsed);
- explicit tags other than the core JSON-like ones in ``ALLOWED_TAGS`` (``!!python/…``,
  ``!!binary``, ``!!set``, ``!!timestamp``, custom ``!tags``);
- an alias inside the node it refers to (a cycle), an undefined alias, a duplicate anchor.

Aliases stay shared nodes here; expanding them (within a budget) is ``yamlsource``'s job.
Problems raise ``Refused``; syntax errors propagate as PyYAML's ``MarkedYAMLError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

MAX_DEPTH = 64  # nested mappings and sequences in one document

_CORE = "tag:yaml.org,2002:"
ALLOWED_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map"))


class Refused(Exception):
    """A document uses something the loader refuses; ``line`` is 1-based."""

    def __init__(self, line: int, summary: str, detail: str) -> None:
        super().__init__(summary)
        self.line, self.summary, self.detail = line, summary, detail


def too_deep(line: int) -> Refused:
    return Refused(
        line,
        "Nesting too deep",
        f"A document may nest mappings and lists at most {MAX_DEPTH} levels deep. Flatten the "
        "structure (for a large structured param, put it in a file and pass its path).",
    )


class Composer:
    """Nodes of every document of a stream, from a PyYAML loader's events."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.anchors: dict[str, yaml.Node] = {}
        self.open: set[int] = set()  # ids of collections being composed

    def documents(self) -> Iterator[yaml.Node | None]:
        """Yield the root node of each document (None for an empty one)."""
        loader = self.loader
        loader.get_event()  # StreamStart
        while not loader.check_event(yaml.StreamEndEvent):
            loader.get_event()  # DocumentStart
            node = None if loader.check_event(yaml.DocumentEndEvent) else self._node(0)
            loader.get_event()  # DocumentEnd
            self.anchors = {}
            yield node
        loader.get_event()

    def _node(self, depth: int) -> yaml.Node:
        event = self.loader.get_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            return self._alias(str(event.anchor), line)
        if event.anchor is not None and event.anchor in self.anchors:
            raise Refused(
                line,
                f"Duplicate anchor &{event.anchor}",
                f"&{event.anchor} is already defined on line "
                f"{self.anchors[event.anchor].start_mark.line + 1}; rename one of them.",
            )
        if isinstance(event, yaml.ScalarEvent):
            tag = self._tag(event, yaml.ScalarNode, event.value, line)
            marks: tuple[Any, Any] = (event.start_mark, event.end_mark)
            node: yaml.Node = yaml.ScalarNode(tag, event.value, *marks, style=event.style)
            if event.anchor is not None:
                self.anchors[event.anchor] = node
            return node
        if depth >= MAX_DEPTH:
            raise too_deep(line)
        return self._collection(event, depth, line)

    def _collection(self, event: Any, depth: int, line: int) -> yaml.Node:
        mapping = isinstance(event, yaml.MappingStartEvent)
        kind = yaml.MappingNode if mapping else yaml.SequenceNode
        tag = self._tag(event, kind, None, line)
        node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        end = yaml.MappingEndEvent if mapping else yaml.SequenceEndEvent
        self.open.add(id(node))
        while not self.loader.check_event(end):
            item = self._node(depth + 1)
            node.value.append((item, self._node(depth + 1)) if mapping else item)
        self.open.discard(id(node))
        node.end_mark = self.loader.get_event().end_mark
        return node

    def _alias(self, anchor: str, line: int) -> yaml.Node:
        node = self.anchors.get(anchor)
        if node is None:
            raise Refused(line, f"Undefined alias *{anchor}", f"Define &{anchor} before using it.")
        if id(node) in self.open:
            raise Refused(
                line,
                f"Recursive alias *{anchor}",
                f"*{anchor} is inside the node &{anchor} names, which would make it infinite. "
                "Refer to another node.",
            )
        return node

    def _tag(self, event: Any, kind: type[yaml.Node], value: str | None, line: int) -> str:
        tag: str | None = event.tag
        if tag is None or tag == "!":
            resolved: str = self.loader.resolve(kind, value, event.implicit)
            return resolved
        if tag not in ALLOWED_TAGS:
            shown = "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag
            raise Refused(
                line,
                f"Unsupported tag {shown}",
                "Configuration values are plain strings, numbers, booleans, null, lists and "
                "mappings; explicit tags other than !!str, !!int, !!float, !!bool, !!null, "
                "!!seq and !!map are refused. Remove the tag (quote the value to keep it as "
                "text).",
            )
        return tag
