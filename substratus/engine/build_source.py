"""Build sources: resolving git refs to commits and hashing local build contexts.

This is the only part of the engine that looks outside the configuration at plan time, and it
only reads: ``git ls-remote`` for refs, the file system for local contexts. Both results go into
digests, so "the same source" means "the same commit" or "the same bytes".

A local build context is what ``docker build`` would send, and ``context_files`` is the one list
of it that the content hash, the local runtime's copy and the Kubernetes upload all use:

- ``.dockerignore`` applies with Docker's rules (``engine.dockerignore``); ``ALWAYS_IGNORED``
  names are left out at any depth whatever it says;
- symbolic links are entries of their own, never followed: the hash covers the link's target
  text, a copy recreates the link (a link to a directory is one entry, not its contents);
- sockets, FIFOs and device files are left out and never opened (``special_files`` lists them,
  for a warning);
- regular files are opened only through ``open_regular``, which never blocks and refuses
  anything that is no longer a regular file.

Problems (an unreadable directory, a malformed .dockerignore) raise ``SourceError``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

from substratus.engine.dockerignore import IgnoreRules, PatternError

# Never part of a build context.
ALWAYS_IGNORED = (".git", ".substratus", "__pycache__", "*.pyc", ".DS_Store")
_COMMIT_RE = re.compile(r"\A[0-9a-f]{40}\Z")

Kind = Literal["file", "link", "special"]


class SourceError(Exception):
    """A build source cannot be resolved; the message says why and what to do."""


def _rules(root: Path) -> IgnoreRules:
    ignore_file = root / ".dockerignore"
    if not ignore_file.is_file():
        return IgnoreRules()
    try:
        with open_regular(ignore_file, follow=True) as fh:
            text = fh.read().decode("utf-8", errors="replace")
        return IgnoreRules.parse(text)
    except PatternError as exc:
        raise SourceError(f"{ignore_file}: {exc}") from exc


def _kind(entry: os.DirEntry[str]) -> Kind | None:
    """The kind of a directory entry; None for a directory."""
    if entry.is_symlink():
        return "link"
    if entry.is_dir(follow_symlinks=False):
        return None
    return "file" if entry.is_file(follow_symlinks=False) else "special"


def _scan(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return list(it)
    except OSError as exc:
        raise SourceError(f"cannot read {directory} in a build context: {exc.strerror}") from exc


def context_entries(root: Path) -> list[tuple[str, Path, Kind]]:
    """Every entry of a build context but directories: (relative POSIX path, absolute path,
    kind), sorted by path, ``.dockerignore`` and ``ALWAYS_IGNORED`` applied."""
    rules = _rules(root)
    found: list[tuple[str, Path, Kind]] = []
    todo: list[tuple[Path, str, tuple[bool, ...]]] = [(root, "", ())]
    while todo:
        directory, prefix, parent = todo.pop()
        for entry in _scan(directory):
            if any(fnmatch.fnmatch(entry.name, p) for p in ALWAYS_IGNORED):
                continue
            rel = prefix + entry.name
            excluded, results = rules.match(rel, parent)
            kind = _kind(entry)
            if kind is None:
                if not excluded or rules.walk_excluded(rel):
                    todo.append((Path(entry.path), rel + "/", results))
            elif not excluded:
                found.append((rel, Path(entry.path), kind))
    return sorted(found)


def context_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Files and symlinks of a build context (relative POSIX path, absolute path), sorted."""
    for rel, path, kind in context_entries(root):
        if kind != "special":
            yield rel, path


def special_files(root: Path) -> list[str]:
    """The sockets, FIFOs and devices a build context leaves out (relative paths)."""
    return [rel for rel, _, kind in context_entries(root) if kind == "special"]


def open_regular(path: Path, follow: bool = False) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (through a symlink only if
    ``follow``; never blocking on a FIFO); ``SourceError`` otherwise."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SourceError(f"{path} is not a regular file any more")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def copy_regular(path: Path, dest: Path) -> None:
    """Copy the regular file ``path`` to ``dest`` with its permission bits."""
    with open_regular(path) as src, dest.open("xb") as out:
        shutil.copyfileobj(src, out)
        os.chmod(dest, stat.S_IMODE(os.fstat(src.fileno()).st_mode))


def hash_directory(root: str | Path) -> str:
    """``sha256:<hex>`` of a build context: relative paths, executable bits and contents of its
    files, relative paths and target texts of its symlinks."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"build context {root} is not a directory")
    h = hashlib.sha256()
    for rel, path in context_files(root):
        try:
            if path.is_symlink():
                target = os.fsencode(os.readlink(path))
                h.update(os.fsencode(rel) + b"\0-\0link\0" + target + b"\0")
                continue
            mode = b"x" if os.access(path, os.X_OK) else b"-"
            h.update(os.fsencode(rel) + b"\0" + mode + b"\0")
            with open_regular(path) as fh:
                for chunk in iter(lambda: fh.read(1 << 16), b""):
                    h.update(chunk)
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror}") from exc
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
