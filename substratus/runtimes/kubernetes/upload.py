"""Uploading a local build context for an in-cluster image build (Kaniko, DESIGN §8).

A resource whose container is ``local: {path: ./dir}`` has an implicit ``build`` resource with the
canonical spec ``{"source": "local", "path": "<absolute dir>", "contentHash": "sha256:…"}``, the
hash computed at plan time by ``substratus.engine.build_source.hash_directory``. Kaniko reads the
context as a ``.tar.gz`` (``--context=gs://bucket/key``); this module puts it there.

``context_tarball(root, dest)`` writes a deterministic gzip tarball of the context and returns
its MD5 (hex): the files ``context_files`` yields (``.dockerignore`` honoured) and their parent
directories, sorted by name, PAX format, mtime 0, uid/gid 0, empty user and group names, mode
0755/0644 by the executable bit (as the content hash sees it; directories 0755), symlinks kept
as symlinks, gzip header with mtime 0 and no file name. It is a function of exactly what the
content hash covers, so the same content gives the same bytes on any machine with the same zlib.
Sockets, FIFOs and devices are not in that list (the plan warned about them); an entry that
turns into one between listing and packing is an error.

``upload_context(root, content_hash, store_url, key, phase, workdir)`` checks that the context
still has the planned hash (``Failure`` "… changed since the plan was made" otherwise, before
and again after packing), packs it into a temporary file under ``workdir`` (removed afterwards)
and puts it at ``{store_url}/{key}``; ``key`` is relative, e.g.
``default/builds/<build-name>/<contentHash[:16]>/context.tar.gz``. It returns
``UploadResult(url, md5, uploaded)``; ``uploaded`` is False (and ``phase`` says "context already
uploaded …") when an object with the same MD5 is already there.

* ``gs://bucket/prefix``: the object's MD5 is read first (equal: skip); else the tarball is PUT
  (stdlib ``urllib``) to a V4 signed URL valid 15 minutes, bound to ``Content-Type:
  application/octet-stream`` and the tarball's ``Content-MD5``, so GCS itself refuses other
  bytes (400 ``BadDigest``); transient failures (408, 429, 5xx, connection errors) are retried.
  Then the object's MD5 is read back and compared. Signing and metadata calls live in
  ``substratus.runtimes.artifacts_gcs`` (the only runtimes module that imports ``google``).
  With ``STORAGE_EMULATOR_HOST`` the URL points at the emulator; fake-gcs-server accepts such a
  path-style PUT only when the request's ``Host`` is its ``-public-host``.
* ``file:///dir``: the tarball is copied to ``dir/key`` (temporary file + rename), unless a file
  with the same MD5 is there; the directory is a hostPath that a kind node mounts.

Every failure is a ``Failure`` that says what failed and what to do.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

from substratus.engine.backoff import Backoff, GaveUp, retry
from substratus.engine.build_source import SourceError, context_files, hash_directory, open_regular
from substratus.engine.failure import Failure
from substratus.runtimes.local.artifacts import local_path

SIGNED_URL_SECONDS = 15 * 60
OCTET_STREAM = "application/octet-stream"
PUT_ATTEMPTS = 5
PUT_RETRY = Backoff(first=0.5, maximum=8.0, attempts=PUT_ATTEMPTS)  # 0.5 s doubling, ±20 %
PUT_TIMEOUT = 120.0  # seconds without progress before one attempt gives up
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class UploadResult:
    url: str  # gs://bucket/prefix/key or file:///dir/key: what Kaniko's --context reads
    md5: str  # hex MD5 of the tarball
    uploaded: bool  # False: the same bytes were already there


def _md5() -> Any:
    return hashlib.md5(usedforsecurity=False)  # an integrity check, as GCS uses it


def file_md5(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, _md5).hexdigest()


# -- the tarball ---------------------------------------------------------------------------------


def context_tarball(root: Path, dest: Path) -> str:
    """Write the deterministic ``.tar.gz`` of the build context ``root`` to ``dest``; return its
    MD5 (hex). See the module docstring for what "deterministic" covers."""
    try:
        files = dict(context_files(root))
    except SourceError as exc:
        raise Failure(f"could not pack the build context {root}", str(exc)) from exc
    dirs = {str(parent) for rel in files for parent in PurePosixPath(rel).parents} - {"."}
    try:
        with (
            dest.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed,
            tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name in sorted(files.keys() | dirs):
                info = tarfile.TarInfo(name)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                path = files.get(name)
                if path is None:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif path.is_symlink():
                    info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, os.readlink(path)
                    tar.addfile(info)
                elif path.is_file():
                    info.mode = 0o755 if os.access(path, os.X_OK) else 0o644  # as hash_directory
                    with open_regular(path) as fh:
                        info.size = os.fstat(fh.fileno()).st_size
                        tar.addfile(info, fh)  # OSError if the file shrinks meanwhile
                else:
                    raise Failure(
                        f"{path} in the build context {root} is neither a file nor a symlink",
                        "remove it or add it to .dockerignore",
                    )
    except (OSError, SourceError) as exc:
        raise Failure(f"could not pack the build context {root}", str(exc)) from exc
    return file_md5(dest)


def _verify(root: Path, content_hash: str) -> None:
    try:
        current = hash_directory(root)
    except (SourceError, OSError) as exc:
        raise Failure(str(exc), "plan again") from exc
    if current != content_hash:
        raise Failure(f"the build context {root} changed since the plan was made", "plan again")


# -- the upload ----------------------------------------------------------------------------------


def upload_context(
    root: Path,
    content_hash: str,
    store_url: str,
    key: str,
    phase: Callable[[str], None],
    workdir: Path,
) -> UploadResult:
    """Put the build context ``root`` (planned with ``content_hash``) at ``{store_url}/{key}``
    as a ``.tar.gz``, unless the same bytes are there already."""
    rel = PurePosixPath(key)
    if not key or rel.is_absolute() or ".." in rel.parts or key != rel.as_posix():
        raise ValueError(f"{key!r} is not a relative object name")
    gs = store_url.startswith("gs://")
    directory = None if gs else local_path(store_url)
    if not gs and (directory is None or not store_url.startswith("file://")):
        raise Failure(
            f"the Kubernetes runtime uploads build contexts to gs://bucket/prefix or "
            f"file:///dir, not {store_url!r}",
            "set artifacts to gs://bucket/prefix (or file:///dir on a kind cluster)",
        )
    _verify(root, content_hash)
    workdir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".context-", suffix=".tar.gz", dir=workdir)
    os.close(fd)
    tarball = Path(name)
    try:
        phase(f"packing the build context {root}")
        md5 = context_tarball(root, tarball)
        _verify(root, content_hash)  # not changed while it was being packed
        if directory is None:
            return _upload_gcs(tarball, md5, store_url, key, phase)
        return _copy_file(tarball, md5, directory / key, phase)
    finally:
        tarball.unlink(missing_ok=True)


def _copy_file(tarball: Path, md5: str, dest: Path, phase: Callable[[str], None]) -> UploadResult:
    try:
        if dest.is_file() and file_md5(dest) == md5:
            phase(f"context already uploaded to {dest} (md5 {md5})")
            return UploadResult(dest.as_uri(), md5, False)
        phase(f"copying the build context to {dest}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        os.close(fd)
        try:
            shutil.copyfile(tarball, name)
            os.chmod(name, 0o644)
            os.replace(name, dest)
        finally:
            Path(name).unlink(missing_ok=True)
    except OSError as exc:
        raise Failure(f"could not copy the build context to {dest}", str(exc)) from exc
    return UploadResult(dest.as_uri(), md5, True)


def _upload_gcs(
    tarball: Path, md5: str, store_url: str, key: str, phase: Callable[[str], None]
) -> UploadResult:
    from substratus.runtimes import artifacts_gcs as gcs

    try:
        where = gcs.GsPath.parse(store_url).child(key)
    except ValueError as exc:
        raise Failure(str(exc), "set artifacts to gs://bucket/prefix") from exc
    if gcs.object_md5(where.url) == md5:
        phase(f"context already uploaded to {where.url} (md5 {md5})")
        return UploadResult(where.url, md5, False)
    md5_b64 = base64.b64encode(bytes.fromhex(md5)).decode()
    signed = gcs.signed_put_url(where.url, md5_b64, SIGNED_URL_SECONDS)
    phase(f"uploading the build context ({tarball.stat().st_size / 1e6:.1f} MB) to {where.url}")
    _put(signed, tarball, md5_b64, where.url)
    stored = gcs.object_md5(where.url)
    if stored != md5:
        raise Failure(
            f"the uploaded build context {where.url} has MD5 {stored or 'none'}, not {md5}",
            "it was replaced or corrupted during the upload; apply again",
        )
    return UploadResult(where.url, md5, True)


def _put(signed_url: str, tarball: Path, md5_b64: str, url: str) -> None:
    """PUT the tarball to the signed URL with the headers it was signed for; retry transient
    failures (the PUT is idempotent: the same bytes to the same name)."""
    headers = {
        "Content-Type": OCTET_STREAM,
        "Content-MD5": md5_b64,
        "Content-Length": str(tarball.stat().st_size),
    }

    def once() -> None:
        try:
            with tarball.open("rb") as body:
                request = urllib.request.Request(signed_url, body, headers, method="PUT")
                with urllib.request.urlopen(request, timeout=PUT_TIMEOUT) as response:
                    response.read()
        except urllib.error.HTTPError as exc:
            raise _Refused(exc.code, exc.read()) from exc

    try:
        retry(once, PUT_RETRY, retryable=_transient)
    except GaveUp as exc:
        _raise_put_failure(exc.last, url)
    except (_Refused, OSError) as exc:
        _raise_put_failure(exc, url)


class _Refused(Exception):
    """An error answer to the PUT."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.body = status, body


def _transient(exc: BaseException) -> bool:
    """A retryable status, or no answer (URLError, resets, timeouts)."""
    if isinstance(exc, _Refused):
        return exc.status in RETRYABLE_STATUS
    return isinstance(exc, OSError)


def _raise_put_failure(exc: BaseException, url: str) -> NoReturn:
    """The ``Failure`` of a PUT that failed (the signed URL is never shown)."""
    if isinstance(exc, _Refused):
        raise _put_error(exc.status, exc.body, url) from exc
    reason = getattr(exc, "reason", exc)
    raise Failure(
        f"could not upload the build context to {url}",
        f"{type(exc).__name__}: {reason}",
        retryable=True,
    ) from exc


def _error_of(body: bytes) -> tuple[str, str]:
    """(code, message) of a GCS XML error (or an emulator's JSON error)."""
    with contextlib.suppress(ElementTree.ParseError):
        root = ElementTree.fromstring(body)
        return root.findtext("Code") or "", root.findtext("Message") or ""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = json.loads(body)["error"]
        return str(error.get("code", "")), str(error.get("message", ""))
    return "", body.decode(errors="replace").strip()[:300]


def _put_error(status: int, body: bytes, url: str) -> Failure:
    code, message = _error_of(body)
    said = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    bucket = url.removeprefix("gs://").split("/", 1)[0]
    if status == 400 and code in ("BadDigest", "InvalidDigest"):
        return Failure(
            f"GCS refused the build context uploaded to {url}: its bytes do not match their "
            f"MD5 ({said})",
            "the tarball was changed or corrupted on the way; apply again",
        )
    if status in (401, 403):
        return Failure(
            f"permission denied uploading the build context to {url} ({said})",
            f"the account that signs the URL needs roles/storage.objectAdmin on gs://{bucket} "
            f"(`gcloud storage buckets add-iam-policy-binding gs://{bucket} --member=… "
            "--role=roles/storage.objectAdmin`); SignatureDoesNotMatch means the request "
            "differs from the signed one or this machine's clock is off",
        )
    if status == 404:
        return Failure(
            f"the bucket gs://{bucket} does not exist (uploading the build context, {said})",
            f"create it (`gcloud storage buckets create gs://{bucket}`) or fix the artifacts URL",
        )
    return Failure(f"uploading the build context to {url} failed", said)
