"""Build contexts: .dockerignore as Docker reads it, symlinks, special files, one shared list.

The .dockerignore cases are the examples of the .dockerignore section of Docker's `docker build`
reference, plus the rules it states (anchoring, `**`, last match wins, re-including below an
excluded directory).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.build_source import (
    SourceError,
    context_entries,
    context_files,
    hash_directory,
    special_files,
)
from substratus.engine.dockerignore import IgnoreRules, PatternError

TREE = [
    "README.md",
    "README-secret.md",
    "README-other.md",
    "CHANGES.md",
    "Dockerfile",
    "main.go",
    "run.py",
    "tempa",
    "tempb",
    "tempab",
    "temp",
    "docs/guide.md",
    "docs/README.md",
    "somedir/temporary.txt",
    "somedir/temp/x.txt",
    "somedir/keep.txt",
    "somedir/subdir/temporary.txt",
    "somedir/subdir/other.txt",
    "pkg/lib/util.go",
    "pkg/lib/util_test.txt",
    "build/out.bin",
    "build/keep/me.txt",
]


def make(root: Path, ignore: str, files: list[str] = TREE) -> Path:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    (root / ".dockerignore").write_text(ignore)
    return root


def listed(root: Path) -> set[str]:
    return {rel for rel, _ in context_files(root)} - {".dockerignore"}


ALL = set(TREE)


@pytest.mark.parametrize(
    ("ignore", "excluded"),
    [
        # "# comment" is ignored; */temp* one level down; */*/temp* two levels; temp? at the root
        (
            "# comment\n*/temp*\n*/*/temp*\ntemp?\n",
            {
                "somedir/temporary.txt",
                "somedir/temp/x.txt",
                "somedir/subdir/temporary.txt",
                "tempa",
                "tempb",
            },
        ),
        ("**/*.go\n", {"main.go", "pkg/lib/util.go"}),
        # only the root's Markdown files: patterns are anchored at the context's root
        ("*.md\n!README.md\n", {"README-secret.md", "README-other.md", "CHANGES.md"}),
        (
            "*.md\n!README*.md\nREADME-secret.md\n",
            {"README-secret.md", "CHANGES.md"},
        ),
        ("*.md\nREADME-secret.md\n!README*.md\n", {"CHANGES.md"}),
        ("**/*.md\n", {p for p in TREE if p.endswith(".md")}),
        # leading and trailing slashes do not matter; "." is ignored
        ("/somedir/subdir/\n.\n", {"somedir/subdir/temporary.txt", "somedir/subdir/other.txt"}),
        ("somedir/../build\n", {"build/out.bin", "build/keep/me.txt"}),
        # everything but the listed exceptions
        ("*\n!run.py\n", ALL - {"run.py"}),
        ("*\n!run.py\n!somedir/keep.txt\n", ALL - {"run.py", "somedir/keep.txt"}),
        # an excluded directory re-included below, plainly and with a wildcard
        ("build\n!build/keep\n", {"build/out.bin"}),
        ("build\n!build/*/me.txt\n", {"build/out.bin"}),
        ("pkg\n!**/*.go\n", {"pkg/lib/util_test.txt"}),
        # "**" in the middle: any number of directories, even none
        ("somedir/**/temporary.txt\n", {"somedir/temporary.txt", "somedir/subdir/temporary.txt"}),
        ("**\n!Dockerfile\n", ALL - {"Dockerfile"}),
        ("docs/**\n", {"docs/guide.md", "docs/README.md"}),
        ("temp[ab]\n", {"tempa", "tempb"}),
        ("te\\mp\n", {"temp"}),
    ],
)
def test_dockerignore_follows_dockers_rules(
    tmp_path: Path, ignore: str, excluded: set[str]
) -> None:
    root = make(tmp_path / "ctx", ignore)
    assert listed(root) == ALL - excluded


def test_the_dockerignore_file_and_dockerfile_can_be_excluded(tmp_path: Path) -> None:
    root = make(tmp_path / "ctx", ".dockerignore\nDockerfile\n")
    names = {rel for rel, _ in context_files(root)}
    assert ".dockerignore" not in names and "Dockerfile" not in names


def test_always_ignored_names_stay_out_whatever_dockerignore_says(tmp_path: Path) -> None:
    root = make(tmp_path / "ctx", "!.git\n!**/__pycache__\n", ["a.py", "sub/x.py"])
    for rel in (".git/config", "sub/__pycache__/x.pyc", ".substratus/state/x.json", "b.pyc"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    assert listed(root) == {"a.py", "sub/x.py"}


@pytest.mark.parametrize("pattern", ["!\n", "[a-\n", "a[\n"])
def test_a_malformed_pattern_is_an_error(tmp_path: Path, pattern: str) -> None:
    with pytest.raises(PatternError):
        IgnoreRules.parse(pattern)
    root = make(tmp_path / "ctx", pattern, ["a.py"])
    with pytest.raises(SourceError, match=r"\.dockerignore"):
        hash_directory(root)


def test_an_exception_below_an_excluded_directory_uses_its_parents_results() -> None:
    # BuildKit matches an entry with its directory's per-pattern results: "!a" was not
    # evaluated for the directory a (nothing was excluded yet), so it does not re-include a/y.
    rules = IgnoreRules.parse("a/y\n!a\n")
    excluded_dir, results = rules.match("a")
    assert not excluded_dir
    assert rules.match("a/y", results)[0]


def test_symlinks_are_entries_never_followed(tmp_path: Path) -> None:
    root = make(tmp_path / "ctx", "", ["run.py", "lib/util.py"])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "to-lib").symlink_to("lib")
    (root / "to-outside").symlink_to(outside)
    (root / "alias.py").symlink_to("run.py")
    entries = {rel: kind for rel, _, kind in context_entries(root)}
    assert entries["to-lib"] == entries["to-outside"] == entries["alias.py"] == "link"
    assert "to-lib/util.py" not in entries and "to-outside/secret.txt" not in entries
    before = hash_directory(root)
    (outside / "secret.txt").write_text("changed")  # not in the context: no change
    assert hash_directory(root) == before
    (root / "alias.py").unlink()
    (root / "alias.py").symlink_to("lib/util.py")  # the link's target text is content
    assert hash_directory(root) != before


def test_special_files_are_listed_apart_and_never_opened(tmp_path: Path) -> None:
    root = make(tmp_path / "ctx", "ignored.fifo\n", ["run.py"])
    before = hash_directory(root)
    os.mkfifo(root / "pipe")  # opening it would block: the hash must never do so
    os.mkfifo(root / "ignored.fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        assert special_files(root) == ["pipe", "sock"]
        assert hash_directory(root) == before
        assert {rel for rel, _ in context_files(root)} == {".dockerignore", "run.py"}


def test_an_unreadable_directory_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make(tmp_path / "ctx", "", ["run.py", "locked/x"])
    real_scandir = os.scandir
    locked = str(root / "locked")

    def scandir(path: str) -> Any:  # as root, chmod 0 cannot make a directory unreadable
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(SourceError, match=r"cannot read .*locked.*Permission denied"):
        hash_directory(root)
