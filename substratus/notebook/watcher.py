"""The remote side of notebook sync-back: scripts that run inside the notebook container.

Nothing is copied into the container (the old nbwatch binary had to be ``kubectl cp``-ed in and
broke on resume, #249): each script is plain Python 3 text, stdlib only, run with
``python3 -c SCRIPT ARGS...`` over whatever exec channel the transport has (run it without a
TTY: a TTY merges stderr into stdout and rewrites line ends).

``WATCHER_SCRIPT ROOT INTERVAL [--state FILE] [--exit-on-eof]`` polls ROOT (``/content``) every
INTERVAL seconds and prints one compact JSON line per event, flushed at once:

- ``{"op": "hello", "files": n, "resumed": false}``: first, always;
- ``{"op": "exists", "path", "size", "mtime_ns", "sha256"}``: right after a fresh hello, one line
  per file present at start-up (the *baseline*; never a change);
- ``{"op": "write", ...same fields}``: a file was created or changed;
- ``{"op": "delete", "path"}``: a file is gone (a rename is a delete and a write);
- ``{"op": "error", "path", "detail"}``: a file cannot be read (once per version of it).

``path`` is relative POSIX. ``sha256`` is ``null`` for files over ``HASH_CAP`` bytes (those are
told apart by size and mtime only). A file is reported only once its size, mtime and inode have
been the same in two consecutive polls, so files Jupyter or a training loop is still writing are
never reported half-written (#174); a file is reported deleted once it has been missing in two
polls; a file rewritten with the same bytes is not reported. Excluded paths (``excluded``) are
neither reported nor descended into; symlinks and names that are not UTF-8 are skipped.

With ``--state FILE`` (``/tmp`` in the container: gone when the pod is recreated) the watcher
keeps what it last reported; started again in the same container (the exec stream dropped and
the client reconnected) it says ``"resumed": true``, sends no baseline and reports what changed
while nobody listened. ``--exit-on-eof`` ends it when its stdin closes, so a watcher whose client
went away does not linger. A missing ROOT is an ``error`` line and exit status 2.

``READ_SCRIPT ROOT RELPATH`` prints the file base64-encoded (binary-safe), one chunk per line,
then ``sha256 <hex> <size>``; ``decode_read_output`` turns that back into verified bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

HASH_CAP = 50 * 1024 * 1024  # bytes; bigger files are compared by size and mtime

# The exclusion rules, as source text: compiled here for the local side and embedded verbatim in
# WATCHER_SCRIPT, so both sides run the very same code.
EXCLUSION_RULES = '''
EXCLUDED_TOP = ("data", "model", "artifacts", "params.json")  # the mounts and the params file
EXCLUDED_NAMES = ("__pycache__",)
EXCLUDED_SUFFIXES = (".pyc", ".swp", "~", ".tmp")


def excluded(relpath):
    """Whether a relative POSIX path is never synced (then nothing under it is either)."""
    parts = relpath.split("/")
    if parts[0] in EXCLUDED_TOP:
        return True
    for part in parts:
        if part.startswith(".") or part in EXCLUDED_NAMES or part.endswith(EXCLUDED_SUFFIXES):
            return True
    return False
'''

_rules: dict[str, Any] = {}
exec(compile(EXCLUSION_RULES, "<substratus exclusion rules>", "exec"), _rules)


def excluded(relpath: str) -> bool:
    """Whether ``relpath`` (relative POSIX) is never synced: the top-level mounts ``data/``,
    ``model/``, ``artifacts/`` and ``params.json``; any segment starting with ``.`` (dot-files,
    ``.ipynb_checkpoints``, Jupyter's ``.~name`` temp files, ``.git``); ``__pycache__``; and any
    segment ending ``.pyc``, ``.swp``, ``~`` or ``.tmp``."""
    return bool(_rules["excluded"](relpath))


_WATCHER_BODY = '''
import argparse, hashlib, json, os, sys, threading, time


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\\n")
    sys.stdout.flush()


def scan(root):
    found, stack = {}, [""]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, rel_dir) if rel_dir else root))
        except OSError:
            continue
        for entry in entries:
            rel = rel_dir + "/" + entry.name if rel_dir else entry.name
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                continue
            if excluded(rel):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    found[rel] = (st.st_size, st.st_mtime_ns, st.st_ino)
            except OSError:
                continue
    return found


def fingerprint(root, rel, sig):
    """(True, sha256 or None) if the file still has signature sig after hashing it."""
    path = os.path.join(root, rel)
    sha = None
    if sig[0] <= HASH_CAP:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        sha = h.hexdigest()
    st = os.stat(path, follow_symlinks=False)
    return (st.st_size, st.st_mtime_ns, st.st_ino) == sig, sha


def file_event(op, rel, sig, sha):
    return {"op": op, "path": rel, "size": sig[0], "mtime_ns": sig[1], "sha256": sha}


def save(path, reported):
    try:
        with open(path + ".new", "w") as f:
            json.dump(reported, f)
        os.replace(path + ".new", path)
    except OSError:
        pass  # best effort: without it a reconnect starts afresh


def load(path):
    try:
        with open(path) as f:
            return {k: tuple(v) for k, v in json.load(f).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def exit_on_eof():
    sys.stdin.read()
    os._exit(0)


def main(argv):
    parser = argparse.ArgumentParser(prog="substratus-nbwatch")
    parser.add_argument("root", nargs="?", default="/content")
    parser.add_argument("interval", nargs="?", type=float, default=1.0)
    parser.add_argument("--state", default="")
    parser.add_argument("--exit-on-eof", action="store_true")
    args = parser.parse_args(argv)
    root = args.root
    if not os.path.isdir(root):
        emit({"op": "error", "path": "", "detail": "no such directory: " + root})
        return 2
    if args.exit_on_eof:
        threading.Thread(target=exit_on_eof, daemon=True).start()
    prev = scan(root)
    reported = load(args.state) if args.state else None
    failed = {}
    if reported is None:
        reported = {}
        for rel in sorted(prev):
            try:
                stable, sha = fingerprint(root, rel, prev[rel])
            except OSError:
                continue
            if stable:
                reported[rel] = prev[rel] + (sha,)
        emit({"op": "hello", "files": len(reported), "resumed": False})
        for rel in sorted(reported):
            emit(file_event("exists", rel, reported[rel], reported[rel][3]))
        if args.state:
            save(args.state, reported)
    else:
        emit({"op": "hello", "files": len(prev), "resumed": True})
    while True:
        time.sleep(args.interval)
        cur = scan(root)
        changed = False
        for rel in sorted(r for r in reported if r not in cur and r not in prev):
            emit({"op": "delete", "path": rel})
            del reported[rel]
            changed = True
        for rel in sorted(cur):
            sig, old = cur[rel], reported.get(rel)
            if (old is not None and old[:3] == sig) or prev.get(rel) != sig:
                continue  # unchanged, or not yet the same in two polls
            try:
                stable, sha = fingerprint(root, rel, sig)
            except OSError as exc:
                if failed.get(rel) != sig:
                    failed[rel] = sig
                    emit({"op": "error", "path": rel, "detail": str(exc)})
                continue
            if not stable:
                continue
            if old is None or sha is None or old[3] != sha:
                emit(file_event("write", rel, sig, sha))
            reported[rel] = sig + (sha,)
            changed = True
        prev = cur
        if changed and args.state:
            save(args.state, reported)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (BrokenPipeError, KeyboardInterrupt):
        os._exit(0)
'''

WATCHER_SCRIPT = f"{EXCLUSION_RULES}\nHASH_CAP = {HASH_CAP}\n{_WATCHER_BODY}"

READ_SCRIPT = """
import base64, hashlib, os, sys

root, rel = sys.argv[1], sys.argv[2]
parts = rel.split("/")
path = os.path.join(root, *parts)
inside = os.path.realpath(path).startswith(os.path.join(os.path.realpath(root), ""))
if rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or not inside:
    sys.stderr.write("invalid path: %r\\n" % (rel,))
    sys.exit(2)
try:
    f = open(path, "rb")
except OSError as exc:
    sys.stderr.write("%s\\n" % (exc,))
    sys.exit(1)
out, h, size = sys.stdout.buffer, hashlib.sha256(), 0
with f:
    for chunk in iter(lambda: f.read(57 * 1024), b""):
        h.update(chunk)
        size += len(chunk)
        out.write(base64.b64encode(chunk) + b"\\n")
out.write(("sha256 %s %d\\n" % (h.hexdigest(), size)).encode())
out.flush()
"""


def watcher_command(
    root: str = "/content",
    interval: float = 1.0,
    *,
    state: str | None = "/tmp/substratus-nbwatch.json",
    exit_on_eof: bool = False,
    python: str = "python3",
) -> list[str]:
    """The argv that starts the watcher in the container. ``exit_on_eof`` only with stdin
    attached and kept open: the watcher ends when it closes."""
    cmd = [python, "-c", WATCHER_SCRIPT, root, repr(float(interval))]
    if state:
        cmd += ["--state", state]
    if exit_on_eof:
        cmd.append("--exit-on-eof")
    return cmd


def read_command(relpath: str, root: str = "/content", *, python: str = "python3") -> list[str]:
    """The argv that prints one file of the container for ``decode_read_output``."""
    return [python, "-c", READ_SCRIPT, root, relpath]


def decode_read_output(output: bytes) -> bytes:
    """The file bytes from ``READ_SCRIPT``'s stdout; ``ValueError`` if truncated or corrupt."""
    lines = [line.strip() for line in output.split(b"\n")]
    lines = [line for line in lines if line]
    if not lines or not lines[-1].startswith(b"sha256 "):
        raise ValueError("the file listing ended early (no sha256 trailer)")
    fields = lines[-1].split()
    if len(fields) != 3 or not fields[2].isdigit():
        raise ValueError(f"malformed trailer {lines[-1][:80]!r}")
    try:
        data = b"".join(base64.b64decode(line, validate=True) for line in lines[:-1])
    except binascii.Error as exc:
        raise ValueError(f"corrupt base64 in the file listing: {exc}") from exc
    if len(data) != int(fields[2]) or hashlib.sha256(data).hexdigest() != fields[1].decode():
        raise ValueError("the file listing does not match its sha256 trailer")
    return data
