"""Durable file primitives for the local state backend (POSIX).

Owns these and nothing about the state format:

- ``atomic_write``: replace a file so a reader sees the old bytes or the new bytes, never a mix,
  and the new bytes are on disk when it returns: a temp file in the same directory, every byte
  written with ``os.write`` (unbuffered, so there is nothing left to flush), ``fsync``,
  ``os.replace``, then ``fsync`` of the directory so the rename itself is durable. On any failure
  (including ``KeyboardInterrupt``) the temp file is removed and the target is untouched.
- ``dir_guard``: a short exclusive ``flock`` on the state directory. Substratus processes on one
  host hold it around their check-then-act steps (compare-and-swap of the state, creating and
  removing the lock file), which makes those steps atomic with respect to each other. Where the
  file system cannot ``flock`` a directory (some network mounts) it yields ``False`` and the
  caller proceeds unguarded: ``O_EXCL`` creation and ``os.replace`` still hold.
- ``append_durably``: add one record (a journal line) to the end of a file with a single
  ``os.write`` on an ``O_APPEND`` descriptor, after cutting off a torn tail left by a crash; the
  file is ``fsync``ed, and its directory too when the file was created. On any failure the file is
  cut back to its previous length (or removed, if this call created it).
- ``read_file``: a file's bytes from an offset together with the ``fstat`` of what was read, and
  ``stat_key``: the identity of a file's current content as far as ``stat`` can tell.
- ``os_failure``: turn an ``OSError`` into a ``DiagnosticError`` that names the path and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from substratus.engine.diagnostic import DiagnosticError, fail

TEMP_SUFFIX = ".tmp"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def temp_name(target: Path) -> Path:
    """A fresh temp path beside ``target``: ``.<name>.<random>.tmp`` (hidden, never ``*.json``)."""
    return target.with_name(f".{target.name}.{secrets.token_hex(8)}{TEMP_SUFFIX}")


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or ``None`` when it does not exist; other errors are diagnostics."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise os_failure("read", path, exc) from exc


def read_file(path: Path, offset: int = 0, limit: int = -1) -> tuple[bytes, os.stat_result] | None:
    """Up to ``limit`` bytes (all when ``-1``) of ``path`` from ``offset``, and the ``fstat`` of
    the file they came from (taken before reading); ``None`` when it does not exist."""
    try:  # unbuffered: open, fstat, then reads until ``limit`` or the end
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise os_failure("read", path, exc) from exc
    try:
        info = os.fstat(fd)
        want = max(0, info.st_size - offset) if limit < 0 else limit
        chunks: list[bytes] = []
        while True:
            chunk = os.pread(fd, max(want, 1 << 16) if limit < 0 else want, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            if limit >= 0:
                want -= len(chunk)
                if want <= 0:
                    break
        return b"".join(chunks), info
    except OSError as exc:
        raise os_failure("read", path, exc) from exc
    finally:
        os.close(fd)


def stat_key(info: os.stat_result) -> tuple[int, ...]:
    """Changes whenever a file is replaced or rewritten (inode, size, mtime, ctime)."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def ensure_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_failure("create the state directory", directory, exc) from exc
    if not directory.is_dir():
        raise os_failure(
            "use the state directory", directory, NotADirectoryError(errno.ENOTDIR, "not a dir")
        )


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write(path: Path, data: bytes) -> None:
    """Durably replace ``path`` with ``data``; raises ``OSError`` with ``path`` untouched."""
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def append_durably(path: Path, data: bytes, size: int | None) -> os.stat_result:
    """Append ``data`` to ``path``, which has ``size`` valid bytes (``None``: create it, it must
    not exist); bytes past ``size`` (a torn tail) are cut off first. Returns the file's ``fstat``
    once ``data`` is durable; raises ``OSError`` with the file back as it was (minus the tail)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL if size is None else flags, 0o666)
    try:
        try:
            if size is not None and os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
            write_all(fd, data)  # one os.write for a regular file; O_APPEND puts it at the end
            os.fsync(fd)
            info = os.fstat(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                if size is None:
                    os.unlink(path)
                else:
                    os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    if size is None:
        fsync_dir(path.parent)
    return info


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # cannot fsync a directory here
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def dir_guard(directory: Path) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``directory``; yields whether the lock was obtained."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise os_failure("open the state directory", directory, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            guarded = True
        except OSError:
            guarded = False
        yield guarded
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def os_failure(action: str, path: Path, exc: OSError) -> DiagnosticError:
    """``could not <action> <path>: <reason>`` with what to do about it."""
    reason = exc.strerror or str(exc)
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        hint = (
            f"The user running substratus ({_user()}) needs read and write access to {path} and "
            "its directory. Fix the ownership or permissions (`ls -ld` shows them), run as the "
            "owner, or point the backend at a writable directory (`file://DIR`)."
        )
    elif code == errno.EROFS:
        hint = "The file system is read-only; point the backend at a writable directory."
    elif code in (errno.ENOSPC, errno.EDQUOT):
        hint = "The disk (or your quota) is full; free some space and run the command again."
    elif code in (errno.ENOTDIR, errno.EEXIST):
        hint = f"{path} (or one of its parents) exists but is not a directory; move it away."
    elif code == errno.ENAMETOOLONG:
        hint = "Use a shorter workspace name or backend path."
    else:
        hint = "Check that the backend directory exists and is usable, then run again."
    return fail(f"could not {action} {path}: {reason}", hint)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
