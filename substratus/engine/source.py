"""Build sources: resolving git refs to commits and hashing local build contexts.

This is the only part of the engine that looks outside the configuration at plan time, and it
only reads: ``git ls-remote`` for refs, the file system for local contexts. Both results go into
digests, so "the same source" means "the same commit" or "the same bytes".
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

# Never part of a build context.
ALWAYS_IGNORED = (".git", ".substratus", "__pycache__", "*.pyc", ".DS_Store")
_COMMIT_RE = re.compile(r"\A[0-9a-f]{40}\Z")


class SourceError(Exception):
    """A build source cannot be resolved; the message says why and what to do."""


def _ignore_patterns(root: Path) -> list[str]:
    patterns = list(ALWAYS_IGNORED)
    ignore_file = root / ".dockerignore"
    if ignore_file.is_file():
        for line in ignore_file.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line and not line.startswith("#") and not line.startswith("!"):
                patterns.append(line.rstrip("/"))
    return patterns


def _ignored(rel: str, name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def context_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Files of a build context (relative POSIX path, absolute path), sorted, ignores applied."""
    patterns = _ignore_patterns(root)
    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_base = base.relative_to(root).as_posix()
        keep = []
        for d in dirnames:
            rel = d if rel_base == "." else f"{rel_base}/{d}"
            if not _ignored(rel, d, patterns):
                keep.append(d)
        dirnames[:] = sorted(keep)
        for f in filenames:
            rel = f if rel_base == "." else f"{rel_base}/{f}"
            if not _ignored(rel, f, patterns):
                entries.append((rel, base / f))
    yield from sorted(entries)


def hash_directory(root: str | Path) -> str:
    """``sha256:<hex>`` of a build context: relative paths, executable bits and contents."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"build context {root} is not a directory")
    h = hashlib.sha256()
    for rel, path in context_files(root):
        mode = "x" if os.access(path, os.X_OK) else "-"
        h.update(f"{rel}\0{mode}\0".encode())
        if path.is_symlink():
            h.update(b"link\0" + os.readlink(path).encode() + b"\0")
            continue
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 16), b""):
                h.update(chunk)
        h.update(b"\0")
    return "sha256:" + h.hexdigest()


def resolve_git_ref(url: str, ref: str, timeout: float = 60) -> str:
    """The commit ``ref`` (a branch, tag, HEAD or full commit) names in the repository ``url``."""
    if _COMMIT_RE.match(ref):
        return ref
    try:
        out = subprocess.run(
            ["git", "ls-remote", "--", url, ref, f"{ref}^{{}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except FileNotFoundError as exc:
        raise SourceError("git is not installed; it is needed to resolve git sources") from exc
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"git ls-remote {url} timed out after {timeout:.0f}s") from exc
    if out.returncode != 0:
        msg = (out.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise SourceError(f"cannot read git repository {url}: {msg}")
    peeled: dict[str, str] = {}
    plain: dict[str, str] = {}
    for line in out.stdout.splitlines():
        sha, _, name = line.partition("\t")
        if name.endswith("^{}"):
            peeled[name[:-3]] = sha
        else:
            plain[name] = sha
    for candidate in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        if candidate in peeled:
            return peeled[candidate]
        if candidate in plain:
            return plain[candidate]
    for name, sha in sorted(plain.items()):
        if name.endswith("/" + ref):
            return peeled.get(name, sha)
    raise SourceError(f"git repository {url} has no branch or tag named {ref!r}")
