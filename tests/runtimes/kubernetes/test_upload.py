"""Build-context upload of the Kubernetes runtime: the deterministic tarball, the ``file://``
store, and the ``gs://`` store through a signed URL against the real fake-gcs-server.

fake-gcs-server v1.54.0 takes a path-style signed PUT (``{emulator}/{bucket}/{object}?X-Goog-…``)
only when the request's ``Host`` is its public host (``-public-host``, default
``storage.googleapis.com``); otherwise it reads the ``Host`` as a bucket name and answers 404.
The ``signed_urls`` fixture sets the public host to the proxy's address for the duration of a
test (``PUT /_internal/config``) and restores it. The emulator checks neither the signature nor
``Content-MD5``: GCS's own refusal (400 ``BadDigest``) is exercised against a stub server, and a
wrong MD5 against the emulator is caught by the MD5 read back after the upload.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import google.auth.credentials
import google.oauth2.credentials
import pytest
from google.auth import exceptions as auth_exceptions
from google.cloud import storage  # type: ignore[import-untyped, unused-ignore]

from substratus.engine.build_source import hash_directory
from substratus.engine.failure import Failure
from substratus.runtimes import artifacts_gcs
from substratus.runtimes.kubernetes import upload
from substratus.runtimes.kubernetes.upload import UploadResult, context_tarball, upload_context
from tests.support.gcs import GcsServer

KEY = "default/builds/app/0123456789abcdef/context.tar.gz"
DEFAULT_PUBLIC_HOST = "storage.googleapis.com"


def make_context(root: Path) -> Path:
    """A context with nested files, an executable, symlinks and ignored files."""
    files = {
        "Dockerfile": "FROM python:3.11\nCOPY . /app\n",
        "run.sh": "#!/bin/sh\necho hi\n",
        "src/app/main.py": "print('hello')\n",
        "src/app/data.bin": "\x00\x01" * 5000,
        "secrets/token": "do not ship\n",
        "debug.log": "noise\n",
        ".git/HEAD": "ref: refs/heads/main\n",
        ".dockerignore": "# local junk\nsecrets\n*.log\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "run.sh").chmod(0o755)
    (root / "src/app/main.py").chmod(0o644)
    (root / "link.py").symlink_to("src/app/main.py")
    (root / "dangling").symlink_to("does/not/exist")
    return root


def phases() -> tuple[list[str], Any]:
    seen: list[str] = []
    return seen, seen.append


def members(tarball: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        return tar.getmembers()


def tar_bytes(root: Path, tmp: Path) -> tuple[bytes, str]:
    dest = tmp / f"t-{len(list(tmp.glob('t-*')))}.tar.gz"
    md5 = context_tarball(root, dest)
    return dest.read_bytes(), md5


@pytest.fixture
def context(tmp_path: Path) -> Path:
    return make_context(tmp_path / "ctx")


# -- the tarball ---------------------------------------------------------------------------------


def test_tarball_is_deterministic(context: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    first, md5 = tar_bytes(context, out)
    second, md5_again = tar_bytes(context, out)
    assert first == second and md5 == md5_again == hashlib.md5(first).hexdigest()

    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(context, copy, symlinks=True)  # other path, inodes, directory order
    for i, path in enumerate(sorted(copy.rglob("*"))):
        os.utime(path, (1_000_000 + i, 2_000_000 + i), follow_symlinks=False)
        if os.geteuid() == 0:
            os.chown(path, 1234, 4321, follow_symlinks=False)
    assert hash_directory(copy) == hash_directory(context)
    assert tar_bytes(copy, out) == (first, md5)


def test_tarball_entries_and_headers(context: Path, tmp_path: Path) -> None:
    data, _ = tar_bytes(context, tmp_path)
    assert data[3] == 0  # gzip FLG: no FNAME (nor anything else)
    assert data[4:8] == b"\0\0\0\0"  # gzip MTIME 0
    infos = members(data)
    names = [i.name for i in infos]
    assert names == sorted(names)
    assert names == [
        ".dockerignore",
        "Dockerfile",
        "dangling",
        "link.py",
        "run.sh",
        "src",
        "src/app",
        "src/app/data.bin",
        "src/app/main.py",
    ]
    by_name = {i.name: i for i in infos}
    for info in infos:
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
    assert by_name["run.sh"].mode == 0o755 and by_name["Dockerfile"].mode == 0o644
    assert by_name["src"].isdir() and by_name["src"].mode == 0o755
    assert by_name["link.py"].issym() and by_name["link.py"].linkname == "src/app/main.py"
    assert by_name["dangling"].issym() and by_name["dangling"].linkname == "does/not/exist"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        extracted = tar.extractfile("src/app/data.bin")
        assert extracted is not None and extracted.read() == b"\x00\x01" * 5000
    assert gzip.decompress(data)  # a valid gzip stream end to end


def test_dockerignore_is_respected(context: Path, tmp_path: Path) -> None:
    names = {i.name for i in members(tar_bytes(context, tmp_path)[0])}
    assert not {n for n in names if n.startswith(("secrets", ".git/", ".git"))}
    assert "debug.log" not in names and ".dockerignore" in names


def test_tarball_follows_the_content(context: Path, tmp_path: Path) -> None:
    _, before = tar_bytes(context, tmp_path)
    (context / "Dockerfile").write_text("FROM python:3.12\n")
    _, edited = tar_bytes(context, tmp_path)
    (context / "Dockerfile").chmod(0o755)
    _, executable = tar_bytes(context, tmp_path)
    (context / "debug.log").write_text("ignored: no change\n")
    _, ignored = tar_bytes(context, tmp_path)
    assert len({before, edited, executable}) == 3 and ignored == executable


def test_special_files_are_left_out_never_opened(context: Path, tmp_path: Path) -> None:
    before = tar_bytes(context, tmp_path)[0]
    planned = hash_directory(context)
    os.mkfifo(context / "pipe")  # opening it for reading would block forever
    os.mkfifo(context / "src" / "pipe")
    assert hash_directory(context) == planned
    assert tar_bytes(context, tmp_path)[0] == before


# -- upload_context: checks and file:// ----------------------------------------------------------


def test_a_changed_context_is_refused(context: Path, tmp_path: Path) -> None:
    planned = hash_directory(context)
    (context / "src/app/main.py").write_text("print('changed')\n")
    workdir = tmp_path / "work"
    with pytest.raises(Failure, match="changed since the plan was made") as err:
        upload_context(context, planned, (tmp_path / "store").as_uri(), KEY, print, workdir)
    assert err.value.detail == "plan again"
    assert not (tmp_path / "store").exists()


def test_a_missing_context_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Failure, match="is not a directory") as err:
        upload_context(
            tmp_path / "gone", "sha256:0", (tmp_path / "s").as_uri(), KEY, print, tmp_path
        )
    assert err.value.detail == "plan again"


def test_bad_store_urls_and_keys(context: Path, tmp_path: Path) -> None:
    planned = hash_directory(context)
    for url in ("s3://bucket/x", str(tmp_path), "file://otherhost/dir"):
        with pytest.raises(Failure, match="gs://bucket/prefix or file:///dir"):
            upload_context(context, planned, url, KEY, print, tmp_path / "w")
    for key in ("", "/abs/context.tar.gz", "a/../b.tar.gz", "a//b"):
        with pytest.raises(ValueError, match="relative object name"):
            upload_context(context, planned, (tmp_path / "s").as_uri(), key, print, tmp_path)


def test_file_store_upload_and_skip(context: Path, tmp_path: Path) -> None:
    store, workdir = tmp_path / "store", tmp_path / "work"
    planned = hash_directory(context)
    expected, expected_md5 = tar_bytes(context, tmp_path)
    seen, phase = phases()

    first = upload_context(context, planned, store.as_uri(), KEY, phase, workdir)
    dest = store / KEY
    assert first == UploadResult(dest.as_uri(), expected_md5, True)
    assert dest.read_bytes() == expected and dest.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in dest.parent.iterdir()) == ["context.tar.gz"]  # no temp left
    assert list(workdir.iterdir()) == []  # the tarball is removed

    second = upload_context(context, planned, store.as_uri(), KEY, phase, workdir)
    assert second == UploadResult(dest.as_uri(), expected_md5, False)
    assert any("context already uploaded" in s for s in seen)

    dest.write_bytes(b"truncated")  # something else under the name: replaced
    third = upload_context(context, planned, store.as_uri(), KEY, phase, workdir)
    assert third.uploaded and dest.read_bytes() == expected


# -- gs:// against the emulator ------------------------------------------------------------------


def _set_public_host(server: GcsServer, host: str) -> None:
    request = urllib.request.Request(
        f"{server.direct_url}/_internal/config",
        data=json.dumps({"publicHost": host}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as response:
        assert response.status == 200


@pytest.fixture
def signed_urls(gcs_server: GcsServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[GcsServer]:
    """The emulator behind ``STORAGE_EMULATOR_HOST``, accepting path-style signed PUTs sent to
    the proxy's address (its public host is that address while the test runs)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    _set_public_host(gcs_server, urlsplit(gcs_server.url).netloc)
    try:
        yield gcs_server
    finally:
        _set_public_host(gcs_server, DEFAULT_PUBLIC_HOST)


def _signed_puts(server: GcsServer, bucket: str, key: str) -> list[dict[str, list[str]]]:
    return [
        parse_qs(e.query)
        for e in server.proxy.log()
        if e.method == "PUT" and e.path == f"/{bucket}/{key}" and e.status == 200
    ]


def test_gs_upload_through_a_signed_url_then_skip(
    signed_urls: GcsServer, gcs_bucket: str, context: Path, tmp_path: Path
) -> None:
    store = f"gs://{gcs_bucket}/artifacts"
    planned = hash_directory(context)
    expected, expected_md5 = tar_bytes(context, tmp_path)
    seen, phase = phases()

    first = upload_context(context, planned, store, KEY, phase, tmp_path / "work")
    url = f"{store}/{KEY}"
    assert first == UploadResult(url, expected_md5, True)
    blob = signed_urls.direct_client().bucket(gcs_bucket).get_blob(f"artifacts/{KEY}")
    assert blob is not None
    assert base64.b64decode(blob.md5_hash).hex() == expected_md5
    assert blob.content_type == "application/octet-stream"
    assert blob.download_as_bytes() == expected
    (put,) = _signed_puts(signed_urls, gcs_bucket, f"artifacts/{KEY}")
    assert put["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"] and put["X-Goog-Signature"]
    assert put["X-Goog-SignedHeaders"] == ["content-md5;content-type;host"]
    assert put["X-Goog-Expires"] == ["900"]
    assert put["X-Goog-Credential"][0].startswith(artifacts_gcs.EMULATOR_SIGNER + "/")
    assert list((tmp_path / "work").iterdir()) == []

    signed_urls.proxy.reset_stats()
    second = upload_context(context, planned, store, KEY, phase, tmp_path / "work")
    assert second == UploadResult(url, expected_md5, False)
    assert any(s.startswith(f"context already uploaded to {url}") for s in seen)
    assert not [e for e in signed_urls.proxy.log() if e.method in ("PUT", "POST")]


def test_gs_upload_with_a_wrong_md5_is_refused(
    signed_urls: GcsServer,
    gcs_bucket: str,
    context: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The URL is signed for (and the PUT sends) an MD5 that is not the bytes'. GCS answers 400
    BadDigest; the emulator stores the bytes anyway, and the MD5 read back refuses them."""
    wrong = hashlib.md5(b"something else").hexdigest()

    def tampered(root: Path, dest: Path) -> str:
        context_tarball(root, dest)
        return wrong

    monkeypatch.setattr(upload, "context_tarball", tampered)
    with pytest.raises(Failure, match=f"has MD5 [0-9a-f]{{32}}, not {wrong}") as err:
        upload_context(context, hash_directory(context), f"gs://{gcs_bucket}", KEY, print, tmp_path)
    assert "apply again" in err.value.detail
    assert _signed_puts(signed_urls, gcs_bucket, KEY)  # it did go through the signed URL


def test_gs_missing_bucket(signed_urls: GcsServer, context: Path, tmp_path: Path) -> None:
    with pytest.raises(Failure, match="does not exist") as err:
        upload_context(
            context, hash_directory(context), "gs://no-such-bucket-x/a", KEY, print, tmp_path
        )
    assert "gcloud storage buckets create" in err.value.detail


# -- answers of GCS the emulator does not give (a stub server) -----------------------------------


class _Stub(BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, bytes]]] = []
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))  # never chunked
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        status, answer = self.answers.pop(0)
        self.send_response(status)
        self.send_header("Content-Type", "application/xml; charset=UTF-8")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


def _xml_error(code: str, message: str) -> bytes:
    return (
        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
        f"<Message>{message}</Message></Error>"
    ).encode()


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Stub]]:
    """``upload_context`` to gs:// with the PUT going to a stub that answers ``_Stub.answers``
    (no object there before; the MD5 read back is the tarball's)."""
    _Stub.answers, _Stub.received = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    uploaded: list[str] = []

    def object_md5(url: str) -> str | None:
        if not uploaded:
            return None
        return hashlib.md5(_Stub.received[-1][1]).hexdigest()

    def signed_put_url(url: str, md5_b64: str, expires_s: int) -> str:
        uploaded.append(url)
        return f"http://127.0.0.1:{server.server_address[1]}/b/k?X-Goog-Signature=s"

    monkeypatch.setattr(artifacts_gcs, "object_md5", object_md5)
    monkeypatch.setattr(artifacts_gcs, "signed_put_url", signed_put_url)
    monkeypatch.setattr("time.sleep", lambda s: None)
    try:
        yield _Stub
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "code", "message", "detail"),
    [
        (400, "BadDigest", "do not match their MD5", "corrupted on the way"),
        (403, "AccessDenied", "permission denied", "roles/storage.objectAdmin on gs://bkt"),
        (403, "SignatureDoesNotMatch", "permission denied", "clock is off"),
        (404, "NoSuchBucket", "gs://bkt does not exist", "gcloud storage buckets create"),
        (411, "MissingContentLength", "failed", "HTTP 411 MissingContentLength"),
    ],
)
def test_gcs_refusals_are_explained(
    stub: type[_Stub],
    context: Path,
    tmp_path: Path,
    status: int,
    code: str,
    message: str,
    detail: str,
) -> None:
    stub.answers = [(status, _xml_error(code, "as GCS says it"))]
    with pytest.raises(Failure, match=message) as err:
        upload_context(context, hash_directory(context), "gs://bkt/p", KEY, print, tmp_path)
    assert detail in err.value.detail or detail in err.value.summary
    assert len(stub.received) == 1  # a refusal is not retried


def test_put_sends_the_signed_headers_and_retries_transient_errors(
    stub: type[_Stub], context: Path, tmp_path: Path
) -> None:
    stub.answers = [(503, b""), (429, _xml_error("SlowDown", "slow down")), (200, b"")]
    result = upload_context(context, hash_directory(context), "gs://bkt/p", KEY, print, tmp_path)
    assert result.uploaded and result.url == f"gs://bkt/p/{KEY}"
    assert len(stub.received) == 3
    headers, body = stub.received[-1]
    assert hashlib.md5(body).hexdigest() == result.md5
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-md5"] == base64.b64encode(bytes.fromhex(result.md5)).decode()
    assert headers["content-length"] == str(len(body))


def test_put_gives_up_after_repeated_transient_errors(
    stub: type[_Stub], context: Path, tmp_path: Path
) -> None:
    stub.answers = [(503, b"")] * upload.PUT_ATTEMPTS
    with pytest.raises(Failure, match="failed") as err:
        upload_context(context, hash_directory(context), "gs://bkt/p", KEY, print, tmp_path)
    assert "HTTP 503" in err.value.detail and len(stub.received) == upload.PUT_ATTEMPTS


# -- signing without a key (Compute Engine, workload identity) and without a service account ----


class _TokenOnly(google.auth.credentials.Credentials):
    """Like Compute Engine credentials: a token and a service account, no private key."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.service_account_email = "default"

    def refresh(self, request: Any) -> None:
        self.token = "ya29.token"
        self.service_account_email = "builder@proj.iam.gserviceaccount.com"


@pytest.fixture
def real_gcs(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``artifacts_gcs`` as against real GCS, with no network: no emulator, no preflight;
    returns a setter for the client's credentials."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(artifacts_gcs, "preflight", lambda bucket, needed: None)

    def use(credentials: Any) -> None:
        gcs = storage.Client(project="proj", credentials=credentials)
        monkeypatch.setattr(artifacts_gcs, "client", lambda: gcs)

    return use


def test_signing_by_iam_signblob(real_gcs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    def sign(message: Any, access_token: str, service_account_email: str, *rest: Any) -> str:
        calls.append((access_token, service_account_email))
        return base64.b64encode(b"signature").decode()

    monkeypatch.setattr("google.cloud.storage._signing._sign_message", sign)
    real_gcs(_TokenOnly())
    url = artifacts_gcs.signed_put_url("gs://bkt/p/ctx.tar.gz", "bWQ1", 900)
    assert calls == [("ya29.token", "builder@proj.iam.gserviceaccount.com")]
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "storage.googleapis.com",
        "/bkt/p/ctx.tar.gz",
    )
    query = parse_qs(parts.query)
    assert query["X-Goog-Credential"][0].startswith("builder@proj.iam.gserviceaccount.com/")
    assert query["X-Goog-SignedHeaders"] == ["content-md5;content-type;host"]


def test_signblob_refused(real_gcs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kw: Any) -> str:
        denied = 'Error calling the IAM signBytes API: b\'{"error": {"code": 403}}\''
        raise auth_exceptions.TransportError(denied)  # type: ignore[no-untyped-call]

    monkeypatch.setattr("google.cloud.storage._signing._sign_message", refuse)
    real_gcs(_TokenOnly())
    with pytest.raises(Failure, match="could not sign the upload URL") as err:
        artifacts_gcs.signed_put_url("gs://bkt/ctx.tar.gz", "bWQ1", 900)
    assert "roles/iam.serviceAccountTokenCreator" in err.value.detail
    assert "builder@proj.iam.gserviceaccount.com" in err.value.summary


def test_user_credentials_cannot_sign(real_gcs: Any) -> None:
    real_gcs(google.oauth2.credentials.Credentials(token="user-token"))  # type: ignore[no-untyped-call]
    with pytest.raises(Failure, match="cannot sign an upload URL") as err:
        artifacts_gcs.signed_put_url("gs://bkt/ctx.tar.gz", "bWQ1", 900)
    assert "roles/iam.serviceAccountTokenCreator" in err.value.detail
