"""Build contexts: local copies (verified by hash) and git checkouts at a commit."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from substratus.engine.failure import Failure
from substratus.engine.runtime import RunContext
from substratus.runtimes.local import LocalRuntime

from .helpers import delete_request, local_build_spec, make_context, record, request


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def test_local_build_copies_the_context_and_adopts_it_again(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    src = make_context(tmp_path / "src", {"run.sh": "echo hi\n", "lib/a.py": "x = 1\n"})
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "a.pyc").write_text("junk")
    req = request("build", "src", local_build_spec(src))
    assert runtime.intent(req)["context_dir"] == str(runtime.workdir.build_dir(req.run_version))
    assert not runtime.workdir.build_dir(req.run_version).exists()  # intent has no side effects

    phases: list[str] = []
    out = runtime.apply(req, RunContext(phase=phases.append))
    ctx = Path(out["context_dir"])
    assert ctx == runtime.workdir.build_dir(req.run_version)
    assert (ctx / "lib" / "a.py").read_text() == "x = 1\n"
    assert (ctx / "run.sh").stat().st_mode & 0o100  # executable bit kept
    assert not (ctx / "__pycache__").exists()
    assert not any(p.name.startswith(".") for p in ctx.parent.iterdir())  # no temp dir left

    (src / "lib" / "a.py").write_text("x = 2\n")
    phases.clear()  # the version an interrupted apply made is adopted as it is
    resumed = dataclasses.replace(req, intent=runtime.intent(req))
    assert runtime.apply(resumed, RunContext(phase=phases.append)) == out
    assert (ctx / "lib" / "a.py").read_text() == "x = 1\n"
    assert any("adopted" in p for p in phases)
    with pytest.raises(Failure, match="exists already"):  # a new run never reuses a version
        runtime.apply(req, RunContext())

    runtime.delete(delete_request(req, out), RunContext())
    assert not ctx.exists()
    runtime.delete(delete_request(req, out), RunContext())  # already gone is fine


def test_local_build_refuses_a_context_that_changed_since_the_plan(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    src = make_context(tmp_path / "src", {"run.sh": "echo hi\n"})
    spec = local_build_spec(src)
    (src / "run.sh").write_text("echo changed\n")
    req = request("build", "src", spec)
    with pytest.raises(Failure) as err:
        runtime.apply(req, RunContext())
    assert err.value.summary == f"the build context {src} changed since the plan was made"
    assert err.value.detail == "plan again"
    assert not runtime.workdir.build_dir(req.run_version).exists()
    assert list(runtime.workdir.builds.iterdir()) == []  # the temp dir was removed


def test_git_build_checks_out_the_planned_commit_and_uses_the_sub_directory(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    repo = make_context(tmp_path / "repo", {"trainer/train.py": "print(1)\n", "README": "r\n"})
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "trainer" / "train.py").write_text("print(2)\n")
    git(repo, "commit", "-q", "-am", "two")

    spec = {"source": "git", "url": str(repo), "ref": "main", "path": "trainer", "commit": first}
    req = request("build", "repo", spec)
    out = runtime.apply(req, RunContext())
    ctx = Path(out["context_dir"])
    assert ctx == runtime.workdir.build_dir(req.run_version) / "trainer"
    assert (ctx / "train.py").read_text() == "print(1)\n"
    assert runtime.intent(req)["context_dir"] == str(ctx)

    refreshed = runtime.refresh({"build.repo": record(req, out)})
    assert refreshed["build.repo"].status == "present"


def test_git_build_reports_a_missing_sub_directory(runtime: LocalRuntime, tmp_path: Path) -> None:
    repo = make_context(tmp_path / "repo", {"a.txt": "a\n"})
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    commit = git(repo, "rev-parse", "HEAD")
    spec = {"source": "git", "url": str(repo), "ref": "HEAD", "path": "nope", "commit": commit}
    with pytest.raises(Failure, match="has no directory 'nope'"):
        runtime.apply(request("build", "repo", spec), RunContext())


def test_git_build_reports_a_bad_repository(runtime: LocalRuntime, tmp_path: Path) -> None:
    spec = {"source": "git", "url": str(tmp_path / "none"), "ref": "main", "commit": "0" * 40}
    with pytest.raises(Failure, match="git clone failed") as err:
        runtime.apply(request("build", "none", spec), RunContext())
    assert "does not exist" in err.value.detail
