"""Code that Python compiles again at every start, kept compiled between runs of the CLI.

Two standard-library modules compile source text at import time, not from ``.pyc`` files:
``dataclasses`` writes each dataclass's methods (``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, a frozen class's ``__setattr__``…) as text and runs it with ``exec``; ``typing``
compiles every string annotation it is asked to resolve (``ForwardRef``) with ``compile``. A
``plan`` or ``validate`` makes about 570 such methods (our modules, pydantic's, typer's) and
resolves about 970 forward references: 45–55 ms of a 0.2 s command on this machine, the same
text on every run.

``install()`` gives those two modules an ``exec`` and a ``compile`` of their own (a module
global shadows the builtin of that name, for that module only), which look the text up here
and compile only what is missing; ``CodeCache.save()`` writes what was compiled back. The
contract of each is the builtin's, exactly: the code is what ``compile`` makes of that text
with the same mode, file name, flags (the future features the caller's code inherits included)
and optimization level; anything the cache does not cover (bytes, an AST, another file name, a
flag that is no future feature such as ``ast.PyCF_ONLY_AST``, an explicit optimization level)
goes to the builtin unchanged.

The file is ``${XDG_CACHE_HOME:-~/.cache}/substratus/code/<interpreter>.marshal``: a
``marshal`` image, as a ``.pyc`` is, of one tuple (this interpreter's exact version and
optimization level, {(mode, flags, text): code}). There is none without an absolute cache
directory: a relative ``XDG_CACHE_HOME`` is ignored, and so is a home that is not absolute
(never a directory under the one the command runs in). Any other version, a damaged file or one
that cannot be read means an empty cache, compiled again and rewritten; a file that cannot be
written means none is kept (nothing is reported: the run is correct either way). Nothing is
written when Python writes no bytecode (``-B``, ``PYTHONDONTWRITEBYTECODE``). The trust is that
of ``__pycache__``: whoever can write the user's cache directory can run code as the user. A
save writes a new file and renames it over the old one, so concurrent runs each read a whole
file; past ``LIMIT`` entries a save keeps only what its own run used.

Nothing here imports more than the standard library: ``substratus.cli.main`` installs it before
typer, pydantic and the app are imported.
"""

from __future__ import annotations
import __future__

import builtins
import contextlib
import dataclasses
import marshal
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any

# All the commands of one version together compile about 1,000 distinct texts (720 KB, 3–4 ms
# to load); texts of earlier versions stay until a save finds more than this.
LIMIT = 3_000
# The compiler flags a caller's code passes on to ``compile`` and ``exec`` of a string: its
# future features (CPython's ``PyCF_MASK``). Not ``nested_scopes``'s, which is also the flag of
# any code nested in a function (``CO_NESTED``), and which the compiler ignores.
INHERITED = 0
for _name in __future__.all_feature_names:
    if _name != "nested_scopes":
        INHERITED |= getattr(__future__, _name).compiler_flag
del _name

Key = tuple[str, int, str]  # (mode, flags, source)


def location() -> Path | None:
    """The cache file of this interpreter; None when there is no absolute cache directory (a
    relative ``XDG_CACHE_HOME`` is ignored, as the XDG specification says; without a home, no
    cache: never a directory under the one the command runs in)."""
    root = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(root):
        home = os.environ.get("HOME")  # set but empty: no home (expanduser would answer "/")
        home = os.path.expanduser("~") if home is None else home  # unset: the password entry
        if not os.path.isabs(home):
            return None
        root = os.path.join(home, ".cache")
    tag = sys.implementation.cache_tag or sys.implementation.name
    return Path(root, "substratus", "code", f"{tag}-O{sys.flags.optimize}.marshal")


def _stamp() -> str:
    """What a cached code object depends on besides its text."""
    return f"{sys.version}|{sys.flags.optimize}"


class CodeCache:
    """Compiled code by (mode, flags, text), loaded from and saved to ``path`` (None: kept
    in this process only)."""

    def __init__(self, path: Path | None, known: dict[Key, types.CodeType] | None = None) -> None:
        self.path = path
        self.known: dict[Key, types.CodeType] = known if known is not None else {}
        self.used: set[Key] = set()
        self.added = 0
        self.pid = os.getpid()

    @classmethod
    def load(cls, path: Path | None) -> CodeCache:
        """The cache saved at ``path``; an empty one when there is none this interpreter can
        use (another version, damaged, unreadable)."""
        if path is None:
            return cls(None)
        try:
            stamp, known = marshal.loads(path.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            return cls(path)
        if stamp != _stamp() or type(known) is not dict:
            return cls(path)
        return cls(path, known)

    def code(self, source: str, mode: str, flags: int) -> types.CodeType:
        """``compile(source, "<string>", mode, flags, dont_inherit=True)``, from the cache when
        it has it."""
        key = (mode, flags, source)
        found = self.known.get(key)
        if type(found) is not types.CodeType:
            found = builtins.compile(source, "<string>", mode, flags, True)
            self.known[key] = found
            self.added += 1
        self.used.add(key)
        return found

    def compile(
        self,
        source: Any,
        filename: Any,
        mode: str,
        flags: int = 0,
        dont_inherit: bool = False,
        optimize: int = -1,
        **rest: Any,
    ) -> Any:
        """The builtin ``compile``, with ``<string>`` source text from the cache."""
        if not dont_inherit:
            flags |= sys._getframe(1).f_code.co_flags & INHERITED
        plain = not flags & ~INHERITED  # no flag but future features (no AST asked for…)
        if type(source) is str and filename == "<string>" and plain and optimize == -1 and not rest:
            return self.code(source, mode, flags)
        return builtins.compile(source, filename, mode, flags, True, optimize, **rest)

    def exec(self, source: Any, globals: Any = None, locals: Any = None, /, **rest: Any) -> None:
        """The builtin ``exec``, with source text compiled through the cache."""
        caller = sys._getframe(1)
        if globals is None:  # the caller's namespaces, as the builtin takes them
            globals = caller.f_globals
            locals = caller.f_locals if locals is None else locals
        if type(source) is str:
            source = self.code(source, "exec", caller.f_code.co_flags & INHERITED)
        builtins.exec(source, globals, locals, **rest)

    def save(self) -> None:
        """Write the cache when this run compiled something new (see the module docstring)."""
        path = self.path
        if path is None or not self.added or sys.dont_write_bytecode or os.getpid() != self.pid:
            return
        known = self.known
        if len(known) > LIMIT:
            known = {key: known[key] for key in self.used}
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(marshal.dumps((_stamp(), known)))
            os.replace(temporary, path)
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
        else:
            self.added = 0


_installed: CodeCache | None = None


def install() -> CodeCache:
    """Load the cache and give ``dataclasses`` and ``typing`` its ``exec`` and ``compile``
    (once per process; a second call returns the first cache)."""
    global _installed
    if _installed is None:
        _installed = CodeCache.load(location())
        vars(dataclasses)["exec"] = _installed.exec
        vars(typing)["compile"] = _installed.compile
    return _installed
