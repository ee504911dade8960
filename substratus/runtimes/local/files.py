"""File-system helpers of the local runtime: atomic JSON records, read-only trees, removal,
and telling a full disk (``disk_full``) apart from other reasons a job failed.

Everything here is best effort where the operating system allows less (``chmod`` does not stop
root) and never raises for something that is already gone. No engine imports: the supervisor
process uses this module too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
# Below this much free space (or with no free inode) a file system counts as full: a write that
# failed there failed for want of space.
FULL_BELOW = 1 << 20
NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"


def short_digest(digest: str) -> str:
    """The 16-character directory name of a digest (an ``algo:`` prefix is dropped)."""
    return digest.split(":", 1)[-1][:16]


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file in the same directory + rename).
    Lean on purpose, as a job's supervisor writes two per run: one ``os.write`` to a temp file
    created ``O_EXCL`` (mode 0600, named after this process and a random suffix)."""
    text = (json.dumps(data, sort_keys=True) + "\n").encode("utf-8")  # one line: C encoder
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(8).hex()}")
    try:
        fd = os.open(tmp, flags, 0o600)
    except FileNotFoundError:  # no directory yet
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, flags, 0o600)
    try:
        try:
            view = memoryview(text)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object stored at ``path``, or None when it is absent or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _chmod_tree(root: Path, writable: bool) -> None:
    top = os.fspath(root)
    try:
        if stat.S_ISLNK(os.lstat(top).st_mode):
            return
    except OSError:
        return
    paths = [top]
    for dirpath, dirnames, filenames in os.walk(top):
        paths.extend(os.path.join(dirpath, n) for n in dirnames + filenames)
    for path in paths:
        with contextlib.suppress(OSError):
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                continue
            new = (mode | stat.S_IWUSR) if writable else (mode & ~_WRITE_BITS)
            os.chmod(path, stat.S_IMODE(new))


def make_read_only(root: Path) -> None:
    """``chmod -R a-w`` best effort (root ignores it; that is fine)."""
    _chmod_tree(root, writable=False)


def remove_tree(path: Path) -> None:
    """Remove a file, symlink or directory tree, making it writable first. Absent is fine."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISLNK(mode) or stat.S_ISREG(mode):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    _chmod_tree(path, writable=True)
    shutil.rmtree(path, ignore_errors=True)


def disk_full(paths: list[Path]) -> str | None:
    """``No space left on device: …`` naming the first of ``paths`` (or its nearest existing
    parent) on a full file system — less than ``FULL_BELOW`` bytes available or no inode —
    or None when none is full or it cannot be told."""
    for path in paths:
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            fs = os.statvfs(probe)
        except OSError:
            continue
        free = fs.f_bavail * fs.f_frsize
        if fs.f_files and fs.f_favail == 0:
            return f"{NO_SPACE}: the file system holding {path} has no free inodes"
        if free < FULL_BELOW:
            return f"{NO_SPACE}: the file system holding {path} is full ({free:,} bytes free)"
    return None


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ('' when absent)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
