"""Hostile and careless input (issue #13: configuration and build contexts), through the CLI.

Each case runs the real CLI in a subprocess with a timeout and a 1 GiB address-space limit, so a
bomb or a hang fails the test instead of the machine. A refused input must be one clear error:
exit 1, the file and line (or the path), no traceback, no "This is a bug", no lock left behind.
An accepted one must run correctly.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import kill_leftovers

MEMORY = 1 << 30  # bytes of address space for one CLI run
TIMEOUT = 60.0  # seconds; every case here takes one or two

HEAD = """\
kind: Dataset
name: data
spec:
  container: {local: {path: ./app}, command: [python3, run.py]}
"""

RUN = """\
import os, pathlib
out = pathlib.Path(os.environ["CONTENT_DIR"]) / "artifacts" / "ran.txt"
out.write_text(pathlib.Path(__file__).read_text())
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


class Dir:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "app").mkdir(parents=True)
        (root / "app" / "run.py").write_text(RUN)

    def config(self, text: str) -> None:
        (self.root / "substratus.yaml").write_text(text)

    def run(self, *args: str, check: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "substratus", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"},
            preexec_fn=_limit_memory,
        )
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr and "This is a bug" not in proc.stderr
        assert not list(self.root.glob(".substratus/state/*.lock")), "a lock was left behind"
        return proc

    def refused(self, *expected: str, command: str = "validate") -> str:
        """Run ``command``, expect one clean error; return stderr."""
        err = self.run(command, check=1).stderr
        for text in expected:
            assert text in err, f"{text!r} not in:\n{err}"
        return err


@pytest.fixture
def d(tmp_path: Path) -> Iterator[Dir]:
    yield Dir(tmp_path / "project")
    kill_leftovers(tmp_path)


# -- configuration -------------------------------------------------------------------------------

LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{x}: &{x} [{', '.join([f'*{p}'] * 9)}]\n" for p, x in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_billion_laughs_fails_at_once_with_file_and_line(d: Dir) -> None:
    d.config(HEAD + "  loader:\n    params:\n      " + LAUGHS.replace("\n", "\n      "))
    for command in ("validate", "plan"):
        d.refused("Aliases expand too much", "substratus.yaml:", command=command)


@pytest.mark.parametrize("depth", [65, 400, 900, 100_000])
def test_nesting_deeper_than_the_limit_is_an_error_at_its_line(d: Dir, depth: int) -> None:
    d.config(HEAD + "  loader:\n    params:\n      deep: " + "[" * depth + "]" * depth + "\n")
    d.refused("Nesting too deep", "at most 64 levels", "substratus.yaml:7")


def test_nesting_within_the_limit_is_fine(d: Dir) -> None:
    d.config(HEAD + "  loader:\n    params:\n      deep: " + "[" * 55 + "1" + "]" * 55 + "\n")
    d.run("validate")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.Inf", "1.0e+999", "-2.5e+400"])
def test_values_that_cannot_round_trip_are_refused(d: Dir, value: str) -> None:
    d.config(HEAD + f"  loader:\n    params:\n      ok: 1\n      x: {value}\n")
    d.refused(f"Not a finite number: {value}", "substratus.yaml:8", "spec.loader.params.x")


@pytest.mark.parametrize("key", ["on", "yes", "Off", "1", "null", "[a]"])
def test_mapping_keys_must_be_strings(d: Dir, key: str) -> None:
    d.config(HEAD + f"  loader:\n    params:\n      {key}: 1\n")
    d.refused("is not a string", "substratus.yaml:7")


def test_quoted_keys_are_strings(d: Dir) -> None:
    d.config(HEAD + '  loader:\n    params:\n      "on": 1\n      "1": 2\n')
    d.run("validate")


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!python/object/apply:os.system ['touch pwned']", "!!python/object/apply:os.system"),
        ("!!python/name:os.system ''", "!!python/name:os.system"),
        ("!!binary aGVsbG8=", "!!binary"),
        ("!!set {a, b}", "!!set"),
        ("!!timestamp 2024-01-01", "!!timestamp"),
        ("!custom x", "!custom"),
    ],
)
def test_explicit_tags_are_refused(d: Dir, value: str, tag: str) -> None:
    d.config(HEAD + f"  loader:\n    params:\n      x: {value}\n")
    d.refused(f"Unsupported tag {tag}", "substratus.yaml:7")
    assert not (d.root / "pwned").exists()


def test_names_and_namespaces_are_matched_whole(d: Dir) -> None:
    d.config(HEAD.replace("name: data", 'name: "ok\\n"'))
    err = d.refused("Invalid name", "substratus.yaml:2", "not a DNS-1123 label")
    d.config(HEAD.replace("name: data", 'name: data\nnamespace: "ns\\n"'))
    err = d.refused("Invalid namespace", "substratus.yaml:3", "not a DNS-1123 label")
    assert "'ns\\n'" in err


def test_a_param_too_large_for_the_environment_is_refused_before_any_plan(d: Dir) -> None:
    big = "x" * (200 * 1024)  # over Linux's 128 KiB per environment string
    d.config(HEAD + f"  loader:\n    params:\n      blob: {big}\n")
    for command in ("validate", "plan"):
        d.refused(
            "Value too large for the environment",
            "substratus.yaml:7",
            "spec.loader.params.blob",
            "at most 65,536 bytes",
            command=command,
        )


def test_params_too_large_together_are_refused(d: Dir) -> None:
    chunk = "x" * (60 * 1024)
    params = "".join(f"      p{i}: {chunk}\n" for i in range(5))
    d.config(HEAD + "  loader:\n    params:\n" + params)
    d.refused("Params and environment too large", "at most 262,144")


@pytest.mark.parametrize("path", ["../../..", "..", "/proc/self", "/"])
def test_local_paths_outside_the_configuration_directory_are_refused(d: Dir, path: str) -> None:
    d.config(HEAD.replace("./app", path))
    for command in ("validate", "plan"):
        d.refused(
            "Build context outside the configuration directory",
            "substratus.yaml:4",
            f"{path} resolves to",
            command=command,
        )


def test_local_paths_may_leave_the_configuration_directory_within_the_repository(
    d: Dir,
) -> None:
    (d.root / ".git").mkdir()  # the repository's root (nothing else is read from it)
    conf = d.root / "deploy"
    conf.mkdir()
    (conf / "substratus.yaml").write_text(HEAD.replace("./app", "../app"))
    sub = Dir.__new__(Dir)
    sub.root = conf
    sub.run("validate")
    (conf / "substratus.yaml").write_text(HEAD.replace("./app", "../.."))
    sub.refused("Build context outside the repository", f"outside the repository ({d.root})")


# -- build contexts ------------------------------------------------------------------------------


def artifact(d: Dir) -> str:
    found = list(d.root.glob(".substratus/artifacts/**/ran.txt"))
    assert len(found) == 1, found
    return found[0].read_text()


def test_dockerignore_exceptions_keep_the_files_they_name(d: Dir) -> None:
    (d.root / "app" / ".dockerignore").write_text("*\n!run.py\n")
    (d.root / "app" / "notes.md").write_text("left out")
    d.config(HEAD)
    d.run("apply", "--auto-approve")
    assert artifact(d) == RUN
    builds = list(d.root.glob(".substratus/builds/*/"))
    assert [sorted(p.name for p in b.iterdir()) for b in builds] == [["run.py"]]
    assert "No changes" in d.run("plan").stdout
    d.run("destroy", "--auto-approve")


def test_symlinks_are_kept_as_links_in_the_hash_and_the_copy(d: Dir) -> None:
    app = d.root / "app"
    (app / "lib").mkdir()
    (app / "lib" / "code.py").write_text(RUN)
    (app / "pkg").symlink_to("lib")  # a link to a directory
    (app / "run.py").unlink()
    (app / "run.py").symlink_to("pkg/code.py")  # a relative link to a file
    d.config(HEAD)
    d.run("apply", "--auto-approve")
    assert artifact(d) == RUN
    (build,) = d.root.glob(".substratus/builds/*/")
    assert os.readlink(build / "pkg") == "lib" and os.readlink(build / "run.py") == "pkg/code.py"
    assert "No changes" in d.run("plan").stdout
    (app / "pkg").unlink()
    (app / "pkg").symlink_to("lib/")  # another target text: another context
    assert "No changes" not in d.run("plan").stdout
    d.run("destroy", "--auto-approve")


def test_sockets_fifos_and_devices_are_skipped_with_a_warning(d: Dir) -> None:
    app = d.root / "app"
    os.mkfifo(app / "pipe")  # plan used to hang on it, holding the lock
    d.config(HEAD)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(app / "sock"))
        for command in ("validate", "plan"):
            out = d.run(command)
            assert "Special files left out of the build context" in out.stderr + out.stdout
            assert "pipe, sock" in out.stderr + out.stdout
        d.run("apply", "--auto-approve")
    assert artifact(d) == RUN
    d.run("destroy", "--auto-approve")
