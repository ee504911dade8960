"""Dataclass methods and forward references are compiled once and kept between CLI runs
(``substratus.cli.codecache``), with exactly the builtin's result.

A run's compilations are counted by an audit hook (Python raises ``compile`` for every text
``compile``, ``exec`` or ``eval`` compiles), each attributed to the first module on the stack
that is not the cache itself.
"""

from __future__ import annotations
import __future__

import ast
import dataclasses
import json
import marshal
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from substratus.cli import codecache
from substratus.cli.codecache import CodeCache

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
COUNTING_MAIN = """\
import collections, json, os, sys

counts = collections.Counter()

def hook(event, args):
    if event == "compile" and args[1] == "<string>":
        frame = sys._getframe(1)
        while frame.f_globals.get("__name__") == "substratus.cli.codecache":
            frame = frame.f_back
        counts[frame.f_globals.get("__name__")] += 1

sys.addaudithook(hook)
sys.argv = ["substratus", "validate", "-f", sys.argv[1]]
from substratus.cli import main
try:
    main()
finally:
    with open(os.environ["COMPILES"], "w", encoding="utf-8") as out:
        json.dump(counts, out)
"""


@pytest.fixture(autouse=True)
def bytecode_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process caches save as a user's would (``PYTHONDONTWRITEBYTECODE`` may be set
    where the tests run)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


def validate(
    tmp_path: Path, cwd: Path = ROOT, **extra: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    """``substratus validate`` of the quickstart in a fresh interpreter (in ``cwd``), with its
    own cache directory; its compilations of text by module."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    counts = tmp_path / "compiles.json"
    env.update(PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "cache"), COMPILES=str(counts))
    env.update(extra)
    done = subprocess.run(
        [sys.executable, "-c", COUNTING_MAIN, str(QUICKSTART)],
        capture_output=True, text=True, env=env, cwd=cwd,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The configuration is valid" in done.stdout
    return done, json.loads(counts.read_text(encoding="utf-8"))


def cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "substratus" / "code").glob("*"))


def test_a_second_run_compiles_no_dataclass_method_or_forward_reference(tmp_path: Path) -> None:
    _, first = validate(tmp_path)
    assert first["dataclasses"] > 300 and first["typing"] > 50  # what the cache is for
    assert len(cache_files(tmp_path)) == 1
    _, second = validate(tmp_path)
    assert second.get("dataclasses", 0) == 0
    assert second.get("typing", 0) == 0


def test_nothing_is_kept_when_python_writes_no_bytecode(tmp_path: Path) -> None:
    validate(tmp_path, PYTHONDONTWRITEBYTECODE="1")
    assert cache_files(tmp_path) == []
    _, second = validate(tmp_path, PYTHONDONTWRITEBYTECODE="1")
    assert second["dataclasses"] > 300


def test_a_damaged_cache_is_compiled_again_and_replaced(tmp_path: Path) -> None:
    validate(tmp_path)
    [path] = cache_files(tmp_path)
    path.write_bytes(b"\xe3 not a marshal image")
    done, counts = validate(tmp_path)
    assert counts["dataclasses"] > 300
    assert done.stderr == ""
    assert len(CodeCache.load(path).known) > 300


def test_a_cache_directory_that_cannot_be_made_is_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("a file where the cache directory would be")
    done, counts = validate(tmp_path)
    assert counts["dataclasses"] > 300
    assert done.stderr == ""


def test_no_cache_is_written_under_the_working_directory(tmp_path: Path) -> None:
    """A relative ``XDG_CACHE_HOME``, and a home that is empty or relative, name no cache:
    a second run compiles everything again (no cache was written anywhere)."""
    work = tmp_path / "work"
    work.mkdir()
    for home in ("", "relative-home", "", "relative-home"):
        _, counts = validate(tmp_path, cwd=work, XDG_CACHE_HOME="relative-cache", HOME=home)
        assert counts["dataclasses"] > 300
    assert list(work.iterdir()) == []
    assert not (tmp_path / "cache").exists()


def test_a_cache_of_another_interpreter_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "code.marshal"
    code = compile("x = 1", "<string>", "exec")
    path.write_bytes(marshal.dumps(("3.0.0 another build|0", {("exec", 0, "x = 1"): code})))
    assert CodeCache.load(path).known == {}


def with_cache(cache: CodeCache) -> typing.Any:
    """A frozen, ordered dataclass with a default factory, made through ``cache``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(vars(dataclasses), "exec", cache.exec)

        @dataclasses.dataclass(frozen=True, order=True)
        class Point:
            x: int
            y: int = 0
            tags: list[str] = dataclasses.field(default_factory=list, compare=False)

    return Point


def test_methods_from_a_cold_and_a_warm_cache_are_the_builtins(tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True, order=True)
    class Point:
        x: int
        y: int = 0
        tags: list[str] = dataclasses.field(default_factory=list, compare=False)

    cold = CodeCache(tmp_path / "code.marshal")
    made = [with_cache(cold)]
    cold.save()
    warm = CodeCache.load(tmp_path / "code.marshal")
    made.append(with_cache(warm))
    assert warm.added == 0 and warm.used == set(cold.known)
    for other in made:
        for name in ("__init__", "__repr__", "__eq__", "__lt__", "__hash__", "__setattr__"):
            assert getattr(other, name).__code__ == getattr(Point, name).__code__, name
        point = other(1, tags=["a"])
        assert (point.x, point.y, point.tags) == (1, 0, ["a"])
        assert repr(point).endswith("Point(x=1, y=0, tags=['a'])")
        assert point == other(1, tags=["b"]) and point < other(2)
        with pytest.raises(dataclasses.FrozenInstanceError):
            point.x = 2


def test_compile_inherits_the_callers_future_features_as_the_builtin_does(tmp_path: Path) -> None:
    """This module has ``from __future__ import annotations``: annotations stay text."""
    cache = CodeCache(tmp_path / "code.marshal")
    for compiled in (cache.compile, compile):
        namespace: dict[str, typing.Any] = {}
        exec(compiled("def f(x: int) -> str: ...", "<string>", "exec"), namespace)
        assert namespace["f"].__annotations__ == {"x": "int", "return": "str"}
    namespace = {}
    exec(cache.compile("def f(x: int): ...", "<string>", "exec", dont_inherit=True), namespace)
    assert namespace["f"].__annotations__ == {"x": int}

    def nested() -> None:  # its code is CO_NESTED, a flag that is no future feature
        cache.compile("g = 1", "<string>", "exec")

    nested()
    assert ("exec", __future__.annotations.compiler_flag, "g = 1") in cache.known


def test_what_is_not_code_goes_to_the_builtin_and_is_not_kept(tmp_path: Path) -> None:
    cache = CodeCache(tmp_path / "code.marshal")
    tree = cache.compile("x = 1", "<string>", "exec", ast.PyCF_ONLY_AST)
    assert isinstance(tree, ast.Module)
    assert cache.compile(tree, "<string>", "exec").co_names == ("x",)
    assert cache.compile("x = 1", "other.py", "exec").co_filename == "other.py"
    assert cache.known == {} and cache.added == 0


def test_a_forward_reference_resolves_through_the_cache(tmp_path: Path) -> None:
    cache = CodeCache(tmp_path / "code.marshal")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(vars(typing), "compile", cache.compile)
        hints = typing.get_type_hints(typing.NamedTuple("Row", [("name", "list[str]")]))
    assert hints == {"name": list[str]}
    assert ("eval", 0, "list[str]") in cache.known


def test_past_the_limit_a_save_keeps_only_what_its_run_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "code.marshal"
    old = CodeCache(path)
    for n in range(5):
        old.code(f"x = {n}", "exec", 0)
    old.save()
    monkeypatch.setattr(codecache, "LIMIT", 5)
    run = CodeCache.load(path)
    run.code("x = 0", "exec", 0)
    run.code("y = 1", "exec", 0)  # new: over the limit
    run.save()
    assert set(CodeCache.load(path).known) == {("exec", 0, "x = 0"), ("exec", 0, "y = 1")}
