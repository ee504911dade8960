"""The fast path of ``yamlsource.load_documents``: plain documents straight from the parser's
events, for files that need none of the full path's care.

``read_plain(text, file)`` builds each document's values and line map in one pass over
libyaml's events, without composing nodes first. It handles what configurations are made of —
mappings with string keys, sequences, strings, and plain numbers, booleans and nulls — and gives
up (returns None) at the first thing the full path (``engine.composer`` and
``yamlsource._Converter``) treats specially: an anchor or alias, a merge key, an explicit tag, a
key that is not a string or is repeated, a value that is not finite or that the constructor
refuses, nesting at ``MAX_DEPTH``, or a syntax error. The caller then reads the file again with
the full path, which reports every problem with its line. So for any file this path accepts,
the documents (values, lines, first lines) are exactly what the full path makes, and for any
other it costs at most one extra pass over the file's first problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import yaml

from substratus.engine.composer import MAX_DEPTH

FieldPath = tuple[str | int, ...]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
# Plain scalars the resolver turns into these are built here; any other tag gives up.
_BUILT = frozenset("tag:yaml.org,2002:" + t for t in ("int", "float", "bool", "null"))


_SCALAR = yaml.ScalarEvent
_MAPPING_END = yaml.MappingEndEvent
_SEQUENCE_END = yaml.SequenceEndEvent


class _GiveUp(Exception):
    """The file needs the full path."""


class _Reader:
    """The documents of one stream, from a loader's events."""

    def __init__(self, loader: Any) -> None:
        self.get: Callable[[], Any] = loader.get_event
        self.resolve: Callable[..., str] = loader.resolve
        self.constructor = yaml.constructor.SafeConstructor()
        # The first characters for which the resolver may find a tag other than str.
        self.resolvable = frozenset(k for k in loader.yaml_implicit_resolvers if k is not None)
        self.tags: dict[str, str] = {}
        if None in loader.yaml_implicit_resolvers:  # a resolver for any first character
            raise _GiveUp

    def documents(self) -> list[tuple[int, Any, dict[FieldPath, int]]]:
        """(first line, value, line map) of every non-empty document."""
        get = self.get
        get()  # StreamStart
        out = []
        while type(get()) is not yaml.StreamEndEvent:  # DocumentStart
            event = get()
            if type(event) is yaml.DocumentEndEvent:
                continue  # an empty document
            lines: dict[FieldPath, int] = {}
            data = self.value(event, (), lines, 0)
            get()  # DocumentEnd
            out.append((event.start_mark.line + 1, data, lines))
        return out

    def value(self, event: Any, path: FieldPath, lines: dict[FieldPath, int], depth: int) -> Any:
        """The value that starts with ``event`` at ``path`` (its line recorded unless the key's
        line already is)."""
        if event.anchor is not None:  # an anchor, or an alias (whose anchor is its name)
            raise _GiveUp
        if path not in lines:
            lines[path] = event.start_mark.line + 1
        kind = type(event)
        if kind is _SCALAR:
            return self.scalar(event)
        if depth >= MAX_DEPTH or event.tag is not None:
            raise _GiveUp
        if kind is yaml.MappingStartEvent:
            return self.mapping(path, lines, depth)
        if kind is yaml.SequenceStartEvent:
            return self.sequence(path, lines, depth)
        raise _GiveUp

    def mapping(self, path: FieldPath, lines: dict[FieldPath, int], depth: int) -> dict[str, Any]:
        get, tags = self.get, self.tags
        out: dict[str, Any] = {}
        while True:
            event = get()
            kind = type(event)
            if kind is _MAPPING_END:
                return out
            if kind is not _SCALAR or event.anchor is not None or event.tag is not None:
                raise _GiveUp  # a key that is a collection, an anchor or alias, a tag
            key = event.value
            if key in out or (event.implicit[0] and (tags.get(key) or self.tag(key)) != _STR_TAG):
                raise _GiveUp  # a repeated key, a key that is not a string, a merge key
            child = (*path, key)
            mark: Any = event.start_mark
            lines[child] = mark.line + 1
            event = get()
            if type(event) is not _SCALAR or event.anchor is not None:
                out[key] = self.value(event, child, lines, depth + 1)
            elif event.tag is None and (not event.implicit[0] or tags.get(event.value) == _STR_TAG):
                out[key] = event.value  # the commonest value, inline: its line is the key's
            else:
                out[key] = self.scalar(event)

    def sequence(self, path: FieldPath, lines: dict[FieldPath, int], depth: int) -> list[Any]:
        get = self.get
        out: list[Any] = []
        while True:
            event = get()
            if type(event) is _SEQUENCE_END:
                return out
            out.append(self.value(event, (*path, len(out)), lines, depth + 1))

    def tag(self, text: str) -> str:
        """The tag the resolver gives the plain scalar ``text`` (remembered per text)."""
        tag = self.tags.get(text)
        if tag is None:
            if text[:1] in self.resolvable:
                tag = self.resolve(yaml.ScalarNode, text, (True, False))
            else:
                tag = _STR_TAG
            self.tags[text] = tag
        return tag

    def scalar(self, event: Any) -> Any:
        """A scalar's value: the text itself when the resolver makes it a string."""
        text: str = event.value
        if event.tag is not None:
            raise _GiveUp
        if not event.implicit[0]:
            return text  # quoted or a block scalar
        tag = self.tag(text)
        if tag == _STR_TAG:
            return text
        # a plain decimal (no sign, "_" or leading 0): what the constructor makes, without a node
        if tag == _INT_TAG and 0 < len(text) < 19 and text.isdecimal() and text[0] != "0":
            return int(text)
        if tag not in _BUILT:
            raise _GiveUp
        node = yaml.ScalarNode(tag, text, event.start_mark, event.end_mark, style=event.style)
        try:
            value = self.constructor.yaml_constructors[tag](self.constructor, node)
        except Exception as exc:
            raise _GiveUp from exc
        if isinstance(value, float) and not math.isfinite(value):
            raise _GiveUp
        return value


def read_plain(text: str) -> list[tuple[int, Any, dict[FieldPath, int]]] | None:
    """(first line, value, line map) of every non-empty document of ``text``, or None when
    the file needs the full path (see the module docstring)."""
    loader = _Loader(text)
    try:
        return _Reader(loader).documents()
    except (_GiveUp, yaml.YAMLError, RecursionError):
        return None
    finally:
        loader.dispose()
