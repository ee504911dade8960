"""The ``gs://bucket/prefix`` artifact store of the local runtime (DESIGN §4), and reading any
``gs://`` version URL (so an input comes from whichever store produced it).

A version is the prefix ``{prefix}/{namespace}/{kind}s/{name}/{digest[:16]}/``: the job's files
and, written last with ``if_generation_match=0``, the marker ``.substratus-complete`` — the marker
exists ⇔ the version is complete. The marker is a JSON manifest (each file's size, CRC32C and
generation; empty directories) that downloads follow: no list call, and a replaced object is
detected. Jobs run against the local ``Mirror`` (``{workdir}/cache/gcs/{bucket}/{key}``, see
``MirroredStore``); ``publish`` uploads a completed version in parallel (checksums verified by
the client) and then writes the marker; ``fetch`` downloads an input version into its mirror
(staged, read-only, renamed into place), reused while the marker generation matches.

For the Kubernetes runtime's build contexts: ``object_md5`` of one object, and
``signed_put_url``, a short-lived V4 URL bound to a Content-MD5 (signed with the credentials' key,
by IAM signBlob for Compute Engine / workload identity, or with a throwaway key for an emulator).

No credentials, a missing bucket or a permission denial is one ``Failure`` with the fix;
transient errors (429, 5xx, resets, timeouts) are retried with backoff (``gcs.client.sdk_retry``
of ``gcs.client.REQUESTS``), which is safe: objects of an incomplete version may be rewritten and
the marker carries a precondition. The client is ``gcs.client``'s, as the state backend's. The
only runtimes module that imports ``google``; it never touches the state.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import google.auth
import google.auth.transport.requests
from google.api_core import exceptions as api
from google.auth import exceptions as auth
from google.auth.credentials import Signing
from google.cloud.storage.exceptions import DataCorruption
from google.oauth2 import service_account

from substratus.engine.diagnostic import Diagnostic
from substratus.engine.failure import Failure
from substratus.engine.kinds import store_root
from substratus.engine.runtime import Held, Owner
from substratus.gcs import client as gcs
from substratus.runtimes import holds
from substratus.runtimes.mirror import PARTIAL_SUFFIX, Mirror, MirroredStore

MARKER = ".substratus-complete"
WORKERS = 8
RETRY = gcs.sdk_retry(replace(gcs.REQUESTS, deadline=180.0))
READ = frozenset({"storage.objects.get"})
WRITE = READ | {"storage.objects.list", "storage.objects.create", "storage.objects.delete"}
FIX_CREDENTIALS = (
    "run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS to a "
    "service account key); for an emulator set STORAGE_EMULATOR_HOST"
)


@dataclass(frozen=True)
class GsPath:
    bucket: str
    key: str  # no leading or trailing "/"; "" is the bucket root

    @classmethod
    def parse(cls, url: str) -> GsPath:
        bucket, _, key = url.removeprefix("gs://").partition("/")
        if not url.startswith("gs://") or not bucket:
            raise ValueError(f"{url!r} is not a gs://bucket/prefix URL")
        return cls(bucket, key.strip("/"))

    def child(self, *parts: str) -> GsPath:
        return GsPath(self.bucket, "/".join(p for p in (self.key, *parts) if p))

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.key}".rstrip("/")

    @property
    def dir_prefix(self) -> str:
        return f"{self.key}/" if self.key else ""


# -- client, errors, access ----------------------------------------------------------------------

_lock = threading.Lock()
_clients: dict[str, Any] = {}
_checked: set[tuple[str, str, frozenset[str]]] = set()


def client() -> Any:
    """One client per process (per emulator host), made by ``gcs.client.make_client``."""
    host = os.environ.get(gcs.EMULATOR_ENV, "")
    with _lock:
        if host not in _clients:
            with _errors("reading Google Cloud credentials", None):
                _clients[host] = gcs.make_client()
        return _clients[host]


@contextlib.contextmanager
def _errors(what: str, where: GsPath | None) -> Iterator[None]:
    """Turn client errors into one ``Failure`` that says what to do."""
    bucket = f"gs://{where.bucket}" if where else "the bucket"
    try:
        yield
    except (auth.DefaultCredentialsError, auth.RefreshError) as exc:
        raise Failure(f"no usable Google Cloud credentials while {what}", FIX_CREDENTIALS) from exc
    except (api.Forbidden, api.Unauthorized) as exc:
        raise Failure(
            f"permission denied while {what}",
            f"{exc.message}. Grant the account roles/storage.objectAdmin on {bucket} "
            f"(`gcloud storage buckets add-iam-policy-binding {bucket} --member=… "
            "--role=roles/storage.objectAdmin`) or use other credentials",
        ) from exc
    except api.NotFound as exc:
        raise Failure(
            f"the bucket {bucket} does not exist ({what})",
            f"create it (`gcloud storage buckets create {bucket}`) or fix the artifacts URL",
        ) from exc
    except api.RetryError as exc:
        raise Failure(
            f"GCS kept failing while {what}", f"gave up retrying: {exc.cause}", retryable=True
        ) from exc
    except (api.GoogleAPICallError, DataCorruption, OSError, ValueError) as exc:
        raise Failure(f"GCS error while {what}", f"{type(exc).__name__}: {exc}") from exc


def preflight(bucket: str, needed: frozenset[str]) -> None:
    """Fail early (before a job runs) when the bucket is missing or permissions are lacking."""
    key = (os.environ.get("STORAGE_EMULATOR_HOST", ""), bucket, needed)
    if key in _checked:
        return
    handle = client().bucket(bucket)
    with _errors(f"checking access to gs://{bucket}", GsPath(bucket, "")):
        try:
            granted = set(handle.test_iam_permissions(sorted(needed), retry=RETRY))
        except api.NotFound:  # a missing bucket, or an emulator without the IAM API
            if not handle.exists(retry=RETRY):
                raise
            granted = set(needed)
    missing = needed - granted
    if missing:
        raise Failure(
            f"the credentials lack {', '.join(sorted(missing))} on gs://{bucket}",
            f"grant roles/storage.objectAdmin on gs://{bucket}, or {FIX_CREDENTIALS}",
        )
    _checked.add(key)


def _list(
    where: GsPath,
    glob: str = "",
    delimiter: str | None = None,
    fields: str = "items(name,generation,timeCreated),prefixes,nextPageToken",
) -> tuple[list[Any], set[str]]:
    """(objects, sub-prefixes) under ``where``; ``glob`` (relative) is a server-side filter
    where GCS supports it (callers still check names: emulators ignore it)."""
    plain = not any(c in where.dir_prefix for c in "*?[]{}\\")
    with _errors(f"listing {where.url}", where):
        pages = client().list_blobs(
            where.bucket,
            prefix=where.dir_prefix,
            delimiter=delimiter,
            match_glob=where.dir_prefix + glob if glob and plain else None,
            fields=fields,
            retry=RETRY,
        )
        objects = list(pages)
        return objects, set(pages.prefixes)


def _parallel(work: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(work, items))


def marker_of(where: GsPath) -> Any | None:
    """The marker object of a version (None: the version is not complete)."""
    preflight(where.bucket, READ)
    with _errors(f"reading {where.child(MARKER).url}", where):
        return client().bucket(where.bucket).get_blob(where.child(MARKER).key, retry=RETRY)


def _create_marker(
    where: GsPath, marker: Any, files: dict[str, dict[str, Any]], dirs: list[str]
) -> bool:
    """Create a version's marker — each file's size, CRC32C and generation, and its empty
    directories — unless one exists (then False: the version was completed before)."""
    manifest = {
        "format": 1,
        "files": files,
        "dirs": dirs,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
    }
    with _errors(f"writing {where.child(MARKER).url}", where):
        try:
            marker.upload_from_string(
                json.dumps(manifest, indent=1, sort_keys=True),
                content_type="application/json",
                if_generation_match=0,
                retry=RETRY,
            )
        except api.PreconditionFailed:
            return False
    return True


def fingerprint(files: Mapping[str, Mapping[str, Any]]) -> str:
    """The identity of a version's content: its files' paths, sizes and CRC32Cs (as a marker's
    manifest lists them, or as a listing finds them)."""
    rows = sorted([rel, f.get("size"), f.get("crc32c")] for rel, f in files.items())
    return "sha256:" + hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def inspect_versions(wanted: Mapping[str, str | None]) -> dict[str, list[str] | None]:
    """For each version URL (with the fingerprint recorded when it completed, if any): None when
    it is not complete (no marker), else what changed in it since (``[]``: nothing; only
    checked when a fingerprint is given). One list call per store prefix; a marker is read
    only for a version that changed."""
    by_root: dict[GsPath, list[GsPath]] = {}
    for url in wanted:
        version = GsPath.parse(url)
        by_root.setdefault(GsPath(version.bucket, store_root(version.key)), []).append(version)
    out: dict[str, list[str] | None] = {}
    for root, versions in by_root.items():
        objects = _list(root, fields="items(name,size,crc32c),nextPageToken")[0]
        for version in versions:
            inside = {
                o.name.removeprefix(version.dir_prefix): o
                for o in objects
                if o.name.startswith(version.dir_prefix) and not o.name.endswith("/")
            }
            if MARKER not in inside:
                out[version.url] = None
                continue
            del inside[MARKER]
            found = {rel: {"size": o.size, "crc32c": o.crc32c} for rel, o in inside.items()}
            recorded = wanted[version.url]
            out[version.url] = (
                [] if recorded is None or fingerprint(found) == recorded else _diff(version, found)
            )
    return out


def _diff(version: GsPath, found: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What differs between a version's objects and its marker's manifest."""
    marker = marker_of(version)
    if marker is None:
        return ["the completion marker was removed"]
    with _errors(f"reading {version.child(MARKER).url}", version):
        files: dict[str, Any] = json.loads(marker.download_as_bytes(retry=RETRY)).get("files", {})
    out = [f"{rel} deleted" for rel in sorted(set(files) - set(found))]
    out += [f"{rel} added" for rel in sorted(set(found) - set(files))]
    out += [
        f"{rel} modified"
        for rel in sorted(set(files) & set(found))
        if (files[rel].get("size"), files[rel].get("crc32c"))
        != (found[rel]["size"], found[rel]["crc32c"])
    ]
    return out or ["its files changed"]


def complete_versions(urls: Iterable[str]) -> set[str]:
    """Which of these version URLs are complete: one list call per store prefix."""
    by_root: dict[GsPath, list[GsPath]] = {}
    for url in urls:
        version = GsPath.parse(url)
        by_root.setdefault(GsPath(version.bucket, store_root(version.key)), []).append(version)
    found: set[str] = set()
    for root, versions in by_root.items():
        names = {o.name for o in _list(root, glob=f"**/{MARKER}")[0]}
        found |= {v.url for v in versions if v.child(MARKER).key in names}
    return found


def fetch(url: str, workdir: Path) -> Path:
    """The local read-only mirror of a complete version, downloaded unless it is current."""
    where = GsPath.parse(url)
    mirror = Mirror(workdir, "gcs")
    path = mirror.path(where.bucket, where.key)
    marker = marker_of(where)
    if marker is None:
        raise Failure(f"{url} is not a complete version", "apply the resource that writes it")
    if mirror.generation(path) == marker.generation:
        return path
    with mirror.lock(url):
        if mirror.generation(path) != marker.generation:
            with mirror.replace(path) as staging:
                _download(where, marker, staging)
            mirror.record(path, marker.generation)
    return path


def _download(where: GsPath, marker: Any, into: Path) -> None:
    bucket = client().bucket(where.bucket)
    with _errors(f"downloading {where.url}", where):
        raw = marker.download_as_bytes(retry=RETRY)
    manifest = json.loads(raw)
    (into / MARKER).write_bytes(raw)  # a complete version has its marker, as in the store
    files: dict[str, dict[str, Any]] = manifest.get("files") or {}
    for rel in manifest.get("dirs") or []:
        (into / rel).mkdir(parents=True, exist_ok=True)

    def one(rel: str) -> None:
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        blob = bucket.blob(where.child(rel).key)
        with _errors(f"downloading {where.child(rel).url}", where):
            try:
                blob.download_to_filename(str(target), checksum="auto", retry=RETRY)
            except api.NotFound:
                blob = None
        if blob is None or blob.crc32c != files[rel].get("crc32c"):
            raise Failure(
                f"{where.url} changed after it was completed: {rel} is missing or replaced",
                "apply the resource that writes it again",
            )

    _parallel(one, files)


# -- single objects by URL (build contexts the Kubernetes runtime uploads) ------------------------

CREATE = READ | {"storage.objects.create"}
OCTET_STREAM = "application/octet-stream"
FIX_SIGNING = (
    "sign with a service account: on GKE (workload identity) or Compute Engine give the "
    "service account roles/iam.serviceAccountTokenCreator on itself (it signs through the IAM "
    "signBlob API); on a workstation impersonate one (`gcloud auth application-default login "
    "--impersonate-service-account=SA_EMAIL`, with that role for you on it) or set "
    "GOOGLE_APPLICATION_CREDENTIALS to a service account key"
)
EMULATOR_SIGNER = "substratus-emulator@substratus.iam.gserviceaccount.com"
_emulator_signer: list[Any] = []  # the throwaway signing credentials, made once per process


def object_md5(url: str) -> str | None:
    """The MD5 (hex) of the object ``gs://bucket/key``; None when there is no such object (or it
    has no MD5: a composite object)."""
    where = GsPath.parse(url)
    preflight(where.bucket, READ)
    with _errors(f"reading {url}", where):
        blob = client().bucket(where.bucket).get_blob(where.key, retry=RETRY)
    if blob is None or not blob.md5_hash:
        return None
    return base64.b64decode(blob.md5_hash).hex()


def signed_put_url(url: str, md5_b64: str, expires_s: int) -> str:
    """A V4 signed URL to PUT the object ``gs://bucket/key`` for ``expires_s`` seconds, bound to
    ``Content-Type: application/octet-stream`` and ``Content-MD5: md5_b64`` (base64): the PUT
    must send both headers, and GCS refuses a body with another MD5 (400 ``BadDigest``).

    Signed with the client's credentials when they hold a key (a service account key,
    impersonation); else (Compute Engine, workload identity) by the IAM signBlob API as the
    credentials' service account. With an emulator: with a throwaway key (the emulator checks no
    signature) and the emulator's URL."""
    where = GsPath.parse(url)
    signing = _signing_arguments()
    preflight(where.bucket, CREATE)
    blob = client().bucket(where.bucket).blob(where.key)
    try:
        with _errors(f"signing an upload URL for {url}", where):
            return str(
                blob.generate_signed_url(
                    version="v4",
                    expiration=timedelta(seconds=expires_s),
                    method="PUT",
                    content_type=OCTET_STREAM,
                    content_md5=md5_b64,
                    **signing,
                )
            )
    except auth.TransportError as exc:  # signBlob (or impersonation) refused or unreachable
        email = signing.get("service_account_email", "the service account")
        raise Failure(
            f"{email} could not sign the upload URL for {url} (IAM signBlob failed)",
            f"{exc}. Grant {email} roles/iam.serviceAccountTokenCreator on itself "
            f"(`gcloud iam service-accounts add-iam-policy-binding {email} "
            f"--member=serviceAccount:{email} --role=roles/iam.serviceAccountTokenCreator`) "
            "and enable iamcredentials.googleapis.com",
        ) from exc


def _signing_arguments() -> dict[str, Any]:
    """How ``generate_signed_url`` signs with the current credentials (see ``signed_put_url``)."""
    endpoint = gcs.emulator_endpoint()
    if endpoint:
        return {"credentials": _emulator_credentials(), "api_access_endpoint": endpoint}
    creds = client()._credentials
    if isinstance(creds, Signing):
        return {}
    if not hasattr(creds, "service_account_email"):  # user credentials, external accounts…
        raise Failure(
            f"the Google Cloud credentials ({type(creds).__name__}) cannot sign an upload URL",
            FIX_SIGNING,
        )
    if not creds.valid:  # a Compute Engine account's e-mail is "default" until refreshed
        with _errors("refreshing the Google Cloud credentials", None):
            creds.refresh(google.auth.transport.requests.Request())
    email = creds.service_account_email
    if not isinstance(email, str) or "@" not in email or not creds.token:
        raise Failure(
            f"the Google Cloud credentials ({type(creds).__name__}) name no service account "
            "to sign an upload URL with",
            FIX_SIGNING,
        )
    return {"service_account_email": email, "access_token": creds.token}


def _emulator_credentials() -> Any:
    """Service-account credentials with a key made up on the spot: the client signs only with a
    private key, and the emulator checks no signature."""
    with _lock:
        if not _emulator_signer:
            try:
                from cryptography.hazmat.primitives import serialization
                from cryptography.hazmat.primitives.asymmetric import rsa
            except ImportError as exc:  # a google-auth dependency since 2.4x; optional before
                raise Failure(
                    "signing upload URLs for the GCS emulator needs the cryptography package",
                    "pip install cryptography",
                ) from exc
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            info = {
                "type": "service_account",
                "client_email": EMULATOR_SIGNER,
                "private_key": pem.decode(),
                "private_key_id": "emulator",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
            make = service_account.Credentials.from_service_account_info
            signer = make(info)  # type: ignore[no-untyped-call]
            _emulator_signer.append(signer)
        return _emulator_signer[0]


# -- holds (``substratus.runtimes.holds``) ------------------------------------------------------


def read_holds(url: str, owner: Owner) -> set[str]:
    """Versions held by every state but ``owner`` in the store ``url``: one list call, and one
    download per other state holding something."""
    where = GsPath.parse(url).child(*holds.HOLDS_DIR.split("/"))
    mine = where.child(holds.document_name(owner.lineage)).key if owner.lineage else None
    bucket = client().bucket(where.bucket)
    out: set[str] = set()
    for found in _list(where)[0]:
        if found.name != mine and found.name.endswith(".json"):
            with _errors(f"reading gs://{where.bucket}/{found.name}", where):
                try:
                    out |= holds.decode(bucket.blob(found.name).download_as_bytes(retry=RETRY))
                except api.NotFound:  # released meanwhile
                    continue
    return out


def write_holds(url: str, owner: Owner, held: Iterable[Held]) -> None:
    """Set ``owner``'s holds in the store ``url`` (an empty set removes its document)."""
    if not owner.lineage:
        return
    held = list(held)
    where = GsPath.parse(url).child(*holds.HOLDS_DIR.split("/"), holds.document_name(owner.lineage))
    blob = client().bucket(where.bucket).blob(where.key)
    with _errors(f"writing {where.url}", where):
        if held:
            blob.upload_from_string(
                holds.encode(owner, held), content_type="application/json", retry=RETRY
            )
        else:
            with contextlib.suppress(api.NotFound):
                blob.delete(retry=RETRY)


# -- the store -----------------------------------------------------------------------------------


class GcsArtifactStore(MirroredStore):
    """Artifacts in ``gs://bucket/prefix``; jobs stage them in the local mirror."""

    def __init__(self, url: str, workdir: Path) -> None:
        root = GsPath.parse(url)
        super().__init__("gs", root.bucket, root.key, workdir, "gcs")
        self._fingerprints: dict[str, str] = {}

    def _version(self, path: Path) -> GsPath:
        found = self.mirror.locate(path)
        if found is None:
            raise Failure(f"{path} is not a version of {self.url}")
        return GsPath(*found)

    def entries(self, namespace: str, kind: str, name: str) -> list[Path]:
        """Remote versions and local mirror (or partial) directories of one resource."""
        base = self.resource_dir(namespace, kind, name)
        where = GsPath(self.bucket, self.resource_key(namespace, kind, name))
        remote = {base / p.rstrip("/").rsplit("/", 1)[-1] for p in _list(where, delimiter="/")[1]}
        return sorted(remote | self.local_entries(namespace, kind, name))

    def remove(self, path: Path) -> None:
        """Remove a version: its marker first (it stops being complete), then its objects."""
        where = GsPath(*found) if (found := self.mirror.locate(path)) else None
        if where is not None and not path.name.endswith(PARTIAL_SUFFIX):
            remove_prefix(where.url)
        self.mirror.forget(path)

    def complete(self, version: Path) -> bool:
        """Asked before a job runs: so it also checks that this store can be written."""
        where = self._version(version)
        preflight(where.bucket, WRITE)
        return marker_of(where) is not None

    def newest(self, namespace: str, kind: str, name: str) -> Path | None:
        """The most recently completed version (by its marker's creation time)."""
        base = GsPath(self.bucket, self.resource_key(namespace, kind, name))
        markers = []
        for found in _list(base, glob=f"*/{MARKER}")[0]:
            version, _, rest = found.name.removeprefix(base.dir_prefix).partition("/")
            if rest == MARKER:
                markers.append((found.time_created, version))
        return self.resource_dir(namespace, kind, name) / max(markers)[1] if markers else None

    def publish(self, version: Path, phase: Callable[[str], None]) -> None:
        """Upload a completed local version, then create its marker (last)."""
        where = self._version(version)
        preflight(where.bucket, WRITE)
        files = sorted(p for p in version.rglob("*") if p.is_file() and p.name != MARKER)
        empty = (p for p in version.rglob("*") if p.is_dir() and not any(p.iterdir()))
        dirs = sorted(p.relative_to(version).as_posix() for p in empty)
        size = sum(p.stat().st_size for p in files)
        phase(f"uploading {len(files)} files ({size / 1e6:.1f} MB) to {where.url}")
        bucket = client().bucket(where.bucket)

        def upload(path: Path) -> tuple[str, dict[str, Any]]:
            rel = path.relative_to(version).as_posix()
            blob = bucket.blob(where.child(rel).key)
            with _errors(f"uploading {where.child(rel).url}", where):
                blob.upload_from_filename(str(path), checksum="auto", retry=RETRY)
            return rel, {"size": blob.size, "crc32c": blob.crc32c, "generation": blob.generation}

        uploaded: dict[str, dict[str, Any]] = dict(_parallel(upload, files))
        phase(f"marking {where.url} complete")
        marker = bucket.blob(where.child(MARKER).key)
        if not _create_marker(where, marker, uploaded, dirs):  # a concurrent or retried publish
            with _errors(f"reading {where.child(MARKER).url}", where):
                marker = bucket.get_blob(marker.name, retry=RETRY)
        if marker is None:
            raise Failure(f"{where.url} was deleted while it was being published")
        self.mirror.record(version, marker.generation)
        self._fingerprints[str(version)] = fingerprint(uploaded)

    def fingerprint(self, version: Path) -> str | None:
        """The content fingerprint of a complete version (its marker is read unless this
        process published it)."""
        known = self._fingerprints.get(str(version))
        if known is not None:
            return known
        marker = marker_of(self._version(version))
        if marker is None:
            return None
        with _errors(f"reading {marker.name}", self._version(version)):
            files = json.loads(marker.download_as_bytes(retry=RETRY)).get("files", {})
        return fingerprint(files)

    def others_holds(self, owner: Owner) -> set[str]:
        return read_holds(self.url, owner)

    def set_holds(self, owner: Owner, held: Iterable[Held]) -> None:
        write_holds(self.url, owner, held)

    def check(self) -> list[Diagnostic]:
        """Credentials exist (no network call; access is checked before the first job)."""
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            return []
        try:
            google.auth.default()
        except auth.DefaultCredentialsError as exc:
            summary = f"no Google Cloud credentials for the artifact store {self.url}"
            return [Diagnostic.error(summary, f"{exc}. {FIX_CREDENTIALS}")]
        return []


# -- versions written by cluster jobs (the Kubernetes runtime) -----------------------------------


def seal(url: str) -> str:
    """Mark a version a cluster job wrote (through GCS FUSE) complete: the marker lists the
    objects found under it now. Idempotent: an existing marker is kept. Returns the version's
    content fingerprint (``fingerprint``) as its marker records it."""
    where = GsPath.parse(url)
    listed = _list(where, fields="items(name,size,crc32c,generation),nextPageToken")[0]
    objects = [o for o in listed if o.name != where.child(MARKER).key]
    files = {
        o.name.removeprefix(where.dir_prefix): {
            "size": o.size,
            "crc32c": o.crc32c,
            "generation": o.generation,
        }
        for o in objects
        if not o.name.endswith("/")
    }
    dirs = sorted(
        o.name.removeprefix(where.dir_prefix).rstrip("/")
        for o in objects
        if o.name.endswith("/") and o.name != where.dir_prefix
    )
    marker = client().bucket(where.bucket).blob(where.child(MARKER).key)
    if not _create_marker(where, marker, files, dirs):  # sealed before: keep that marker
        with _errors(f"reading {where.child(MARKER).url}", where):
            files = json.loads(marker.download_as_bytes(retry=RETRY)).get("files", {})
    return fingerprint(files)


def newest_version(url: str) -> str | None:
    """The newest complete version below a resource's directory ``url`` (by marker time)."""
    base = GsPath.parse(url)
    markers = []
    for found in _list(base, glob=f"*/{MARKER}")[0]:
        version, _, rest = found.name.removeprefix(base.dir_prefix).partition("/")
        if rest == MARKER:
            markers.append((found.time_created, version))
    return base.child(max(markers)[1]).url if markers else None


def version_urls(url: str) -> list[str]:
    """Every version directory (complete or not) below a resource's directory ``url``."""
    base = GsPath.parse(url)
    return sorted(
        base.child(p.rstrip("/").rsplit("/", 1)[-1]).url for p in _list(base, delimiter="/")[1]
    )


def remove_prefix(url: str) -> None:
    """Delete everything under ``url``; a version's marker goes first (it stops being complete)."""
    where = GsPath.parse(url)
    bucket = client().bucket(where.bucket)

    def delete(key: str) -> None:
        with (
            _errors(f"deleting gs://{where.bucket}/{key}", where),
            contextlib.suppress(api.NotFound),
        ):
            bucket.blob(key).delete(retry=RETRY)

    names = [o.name for o in _list(where)[0]]
    markers = [n for n in names if n.endswith(f"/{MARKER}")]
    _parallel(delete, markers)
    _parallel(delete, [n for n in names if n not in set(markers)])
