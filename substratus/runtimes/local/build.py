"""Build contexts: the local runtime's "image build" materialises the directory a workload runs in.

``materialise(spec, target)`` creates ``target`` (``builds/{version}/``) from a canonical build
spec with absolute locations — ``{"source": "git", "url", "ref", "path", "commit"}`` or
``{"source": "local", "path", "contentHash"}`` — and returns the context directory (the ``path``
sub-directory of a git checkout, or the copy of a local directory). Work happens in a temporary
sibling that is renamed into place atomically; an existing ``target`` is adopted as is only when
``adopt`` (an interrupted apply made it), else it is an error.
A local copy is verified against the planned content hash. Failures raise ``Failure``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from substratus.engine.build_source import SourceError, context_files, copy_regular, hash_directory
from substratus.engine.failure import Failure
from substratus.runtimes.local.files import remove_tree

GIT_TIMEOUT = 600.0


def context_dir(spec: Mapping[str, Any], target: Path) -> Path:
    """Where the build context is inside ``target``."""
    if spec.get("source") == "git":
        sub = str(spec.get("path") or "").strip("/")
        return target / sub if sub else target
    return target


def _git(args: list[str], cwd: Path | None = None) -> None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT, env=env
        )
    except FileNotFoundError as exc:
        raise Failure("git is not installed", "install git to build from git sources") from exc
    except subprocess.TimeoutExpired as exc:
        raise Failure(f"git {args[0]} timed out after {GIT_TIMEOUT:.0f} s") from exc
    if out.returncode != 0:
        raise Failure(f"git {args[0]} failed (exit code {out.returncode})", out.stderr.strip())


def _checkout(spec: Mapping[str, Any], tmp: Path, phase: Callable[[str], None]) -> None:
    url, commit = str(spec["url"]), str(spec["commit"])
    phase(f"cloning {url}")
    _git(["clone", "--quiet", "--no-checkout", "--", url, str(tmp)])
    phase(f"checking out {commit[:12]}")
    try:
        _git(["checkout", "--quiet", "--detach", commit], cwd=tmp)
    except Failure:  # not on a fetched branch or tag: ask for it by id
        _git(["fetch", "--quiet", "origin", commit], cwd=tmp)
        _git(["checkout", "--quiet", "--detach", commit], cwd=tmp)
    sub = context_dir(spec, tmp)
    if not sub.is_dir():
        raise Failure(
            f"the git repository {url} has no directory {spec.get('path')!r} at {commit[:12]}",
            "fix container.git.path",
        )


def _copy(spec: Mapping[str, Any], tmp: Path, phase: Callable[[str], None]) -> None:
    source = Path(str(spec["path"]))
    phase(f"copying {source}")
    if not source.is_dir():
        raise Failure(f"the build context {source} does not exist", "plan again")
    try:  # the very list the content hash covers: links stay links, special files are left out
        for rel, path in context_files(source):
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                dest.symlink_to(os.readlink(path))
            else:
                copy_regular(path, dest)
        copied = hash_directory(tmp)
    except SourceError as exc:
        raise Failure(str(exc), "plan again") from exc
    if copied != spec.get("contentHash"):
        raise Failure(f"the build context {source} changed since the plan was made", "plan again")


def materialise(
    spec: Mapping[str, Any], target: Path, phase: Callable[[str], None], adopt: bool = True
) -> tuple[Path, bool]:
    """Create ``target`` from ``spec``; returns (context directory, adopted)."""
    if target.is_dir():
        if not adopt:
            raise Failure(f"the new build directory {target} exists already", "apply again")
        return context_dir(spec, target), True
    source = spec.get("source")
    if source not in ("git", "local"):
        raise Failure(f"unknown build source {source!r}", "the local runtime builds git and local")
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*"):  # left by an interrupted build
        remove_tree(stale)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        if source == "git":
            remove_tree(tmp)  # git clone wants to create the directory itself
            _checkout(spec, tmp, phase)
        else:
            _copy(spec, tmp, phase)
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            return context_dir(spec, target), True  # a concurrent build won; adopt it
    finally:
        remove_tree(tmp)
    return context_dir(spec, target), False
