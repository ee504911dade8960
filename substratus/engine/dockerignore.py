""".dockerignore patterns, matched as ``docker build`` (BuildKit) matches them.

The rules, from Docker's reference and its pattern matcher:

- One pattern a line; a line starting with ``#`` is a comment; surrounding whitespace is dropped;
  each pattern is cleaned like a path (``a//b/./c/`` is ``a/b/c``, ``..`` resolved lexically) and a
  leading ``/`` removed: patterns are anchored at the context's root, so ``*.md`` is only the
  root's Markdown files and ``*/temp*`` only one level down.
- ``*`` is any run of characters but ``/``, ``?`` one character but ``/``, ``[…]`` a class,
  ``\\`` escapes; ``**`` is any number of directories (``**/*.go`` is every ``.go`` file).
- A pattern that matches a directory matches everything below it.
- ``!pattern`` re-includes; the last pattern that matches a path decides.
- An excluded directory is still walked when an exception could apply inside it: when every
  exception is a plain path (no wildcard but a trailing ``/*`` or ``/**``), only the directories
  on the way to one; otherwise every excluded directory. An entry below is matched using its
  directory's per-pattern results, as BuildKit's walker does.

``IgnoreRules.parse(text)`` reads a file (``PatternError`` for a malformed pattern);
``rules.match(rel, parent)`` says whether a path is excluded; ``rules.walk_excluded(rel)``
whether an excluded directory must still be walked. Pure; no I/O.
"""

from __future__ import annotations

import posixpath
import re
import warnings
from dataclasses import dataclass
from enum import Enum

_WILDCARDS = "*[]?^\\"


class PatternError(ValueError):
    """A .dockerignore pattern Docker would refuse."""


class _Kind(Enum):
    EXACT = 1
    PREFIX = 2  # ends with ** and has no wildcard before
    SUFFIX = 3  # starts with ** and has no wildcard after
    REGEXP = 4


def _clean(path: str) -> str:
    """Go's ``filepath.Clean`` (POSIX)."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _translate(pattern: str) -> tuple[_Kind, str]:
    """The match kind of ``pattern`` and its regular expression (for ``_Kind.REGEXP``)."""
    regex, kind, i, n = "", _Kind.EXACT, 0, len(pattern)
    while i < n:
        first, ch = i == 0, pattern[i]
        i += 1
        if ch == "*" and i < n and pattern[i] == "*":
            i += 2 if pattern[i + 1 : i + 2] == "/" else 1  # "**/" is "**"
            if i >= n:
                kind = _Kind.PREFIX if kind is _Kind.EXACT else _Kind.REGEXP
                regex += "" if kind is _Kind.PREFIX else ".*"
            else:
                regex, kind = regex + "(.*/)?", _Kind.REGEXP
            if first:
                kind = _Kind.SUFFIX
        elif ch in "*?":
            regex, kind = regex + ("[^/]*" if ch == "*" else "[^/]"), _Kind.REGEXP
        elif ch in ".+()|{}$":
            regex += "\\" + ch
        elif ch == "\\":
            if i < n:
                regex, kind = regex + re.escape(pattern[i]), _Kind.REGEXP  # \c is c
                i += 1
            else:
                regex += "\\\\"
        elif ch in "[]":
            regex, kind = regex + ch, _Kind.REGEXP
        else:
            regex += ch
    return kind, regex


@dataclass(frozen=True)
class Pattern:
    text: str  # cleaned, without the "!"
    exclusion: bool  # a "!" exception
    kind: _Kind
    regex: re.Pattern[str] | None

    @classmethod
    def compile(cls, line: str) -> Pattern:
        text = _clean(line.strip())
        exclusion = text.startswith("!")
        if exclusion:
            if text == "!":
                raise PatternError('illegal exclusion pattern: "!"')
            text = text[1:]
        kind, regex = _translate(text)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "possible nested set" and the like
                compiled = re.compile("^" + regex + r"\Z") if kind is _Kind.REGEXP else None
        except re.error as exc:
            raise PatternError(f"syntax error in pattern {text!r}: {exc}") from exc
        return cls(text, exclusion, kind, compiled)

    def matches(self, path: str) -> bool:
        if self.kind is _Kind.EXACT:
            return path == self.text
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None

    def stem(self) -> str:
        """The pattern without a trailing ``/**`` or ``/*`` (for the walking shortcut)."""
        return self.text.removesuffix("/**").removesuffix("/*")


@dataclass(frozen=True)
class IgnoreRules:
    patterns: tuple[Pattern, ...] = ()

    @classmethod
    def parse(cls, text: str) -> IgnoreRules:
        """The rules of a .dockerignore file's text."""
        found = []
        for line in text.removeprefix("\ufeff").splitlines():
            if line.startswith("#"):
                continue
            pattern = line.strip()
            if not pattern:
                continue
            invert = pattern.startswith("!")
            if invert:
                pattern = pattern[1:].strip()
            if pattern:
                pattern = _clean(pattern)
                if len(pattern) > 1 and pattern.startswith("/"):
                    pattern = pattern[1:]
            found.append(Pattern.compile(("!" if invert else "") + pattern))
        return cls(tuple(found))

    def match(self, path: str, parent: tuple[bool, ...] = ()) -> tuple[bool, tuple[bool, ...]]:
        """(excluded, per-pattern results to pass for the entries below ``path``); ``parent``
        is what the call for ``path``'s directory returned (``()`` at the root)."""
        excluded = False
        results = []
        for i, pattern in enumerate(self.patterns):
            hit = bool(parent) and parent[i]
            if not hit:
                if pattern.exclusion != excluded:
                    results.append(False)
                    continue
                hit = pattern.matches(path) or (not parent and self._parents_match(pattern, path))
            results.append(hit)
            if hit:
                excluded = not pattern.exclusion
        return excluded, tuple(results)

    @staticmethod
    def _parents_match(pattern: Pattern, path: str) -> bool:
        parts = path.split("/")[:-1]
        return any(pattern.matches("/".join(parts[: i + 1])) for i in range(len(parts)))

    def walk_excluded(self, directory: str) -> bool:
        """Whether the excluded ``directory`` must still be walked for exceptions inside it."""
        exceptions = [p for p in self.patterns if p.exclusion]
        if any(c in p.stem() for p in exceptions for c in _WILDCARDS):
            return True
        return any((p.stem() + "/").startswith(directory + "/") for p in exceptions)
