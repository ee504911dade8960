"""YAML documents with line numbers.

``load_documents(text, file)`` parses multi-document YAML with PyYAML's composer and converts the
node tree to plain Python values while remembering the line of every key, so later validation can
say ``file:line`` for any field path. Duplicate keys are an error (PyYAML would silently keep the
last one). Syntax errors become diagnostics with the line PyYAML reports. No other I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from substratus.engine.diagnostic import Diagnostic, Source

Path = tuple[str | int, ...]

# libyaml's parser when PyYAML was built with it (it keeps marks, so lines are exact).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def path_str(path: Path) -> str:
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
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int:
        """The line of the longest known prefix of ``path`` (or the document's first line)."""
        for n in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:n]))
            if line is not None:
                return line
        return self.line

    def source(self, path: Path = ()) -> Source:
        return Source(self.file, self.line_of(path))


class _Converter:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Path, int] = {}
        self.errors: list[Diagnostic] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def convert(self, node: yaml.Node, path: Path) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            self._constructor.flatten_mapping(node)
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) or key is None:
                    self.errors.append(
                        Diagnostic.error(
                            "Invalid mapping key",
                            "Mapping keys must be plain strings.",
                            source=Source(self.file, key_node.start_mark.line + 1),
                            path=path_str(path) or None,
                        )
                    )
                    continue
                key = str(key)
                child = (*path, key)
                if key in out:
                    self.errors.append(
                        Diagnostic.error(
                            f"Duplicate key {key!r}",
                            f"{key!r} is already set on line {self.lines[child]}; "
                            "remove one of them.",
                            source=Source(self.file, key_node.start_mark.line + 1),
                            path=path_str(child),
                        )
                    )
                    continue
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self.convert(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        if node.tag == _STR_TAG and isinstance(node, yaml.ScalarNode):
            return node.value  # the common case, without the constructor's bookkeeping
        return self._constructor.construct_object(node, deep=True)


_STR_TAG = "tag:yaml.org,2002:str"


def load_documents(text: str, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """Parse every document of ``text``; returns the documents and any diagnostics."""
    docs: list[Document] = []
    errors: list[Diagnostic] = []
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            conv = _Converter(file)
            data = conv.convert(node, ())
            errors.extend(conv.errors)
            docs.append(Document(file, node.start_mark.line + 1, data, conv.lines))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        errors.append(
            Diagnostic.error(
                "Malformed YAML",
                f"{problem}{context}. Fix the syntax at this line.",
                source=Source(file, line),
            )
        )
    except yaml.YAMLError as exc:
        errors.append(Diagnostic.error("Malformed YAML", str(exc), source=Source(file)))
    finally:
        loader.dispose()
    return docs, errors
