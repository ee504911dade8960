"""The GCS test infrastructure itself: fake-gcs-server behind the fault proxy, driven with the
official client. Each test names the emulator gap the proxy closes, or the fault it injects."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from google.api_core import exceptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[import-untyped, unused-ignore]
from google.cloud.storage.retry import (  # type: ignore[import-untyped, unused-ignore]
    DEFAULT_RETRY,
)

from tests.support.gcs import (
    BINARY_ENV,
    REPO_ROOT,
    GcsEmulatorUnavailable,
    GcsServer,
    find_fake_gcs_binary,
)
from tests.support.gcs_proxy import (
    FaultConfig,
    FaultProxy,
    LogEntry,
    evaluate_preconditions,
    gcs_error_body,
)


def fast_retry(timeout: float = 5.0) -> Retry:
    """The storage library's own retry (its predicate also understands the media layer's
    ``InvalidResponse``; api_core's ``if_transient_error`` does not), with short waits."""
    retry: Retry = DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.05, multiplier=2)
    return retry.with_timeout(timeout)


@pytest.fixture
def bucket(gcs_server: GcsServer, gcs_bucket: str) -> storage.Bucket:
    return gcs_server.client().bucket(gcs_bucket)


def put(bucket: storage.Bucket, name: str, data: bytes, **kwargs: int) -> storage.Blob:
    blob = bucket.blob(name)
    blob.upload_from_string(data, **kwargs)
    return blob


# -- preconditions ------------------------------------------------------------------------------


def test_create_if_absent_race_has_exactly_one_winner(
    gcs_server: GcsServer,
    gcs_bucket: str,
) -> None:
    clients = [gcs_server.client() for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    outcomes: list[str] = [""] * len(clients)

    def contend(i: int) -> None:
        blob = clients[i].bucket(gcs_bucket).blob("lock")
        barrier.wait()
        try:
            blob.upload_from_string(f"writer {i}".encode(), if_generation_match=0)
            outcomes[i] = "won"
        except exceptions.PreconditionFailed:
            outcomes[i] = "lost"

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    winner = outcomes.index("won")
    content = gcs_server.client().bucket(gcs_bucket).blob("lock").download_as_bytes()
    assert content == f"writer {winner}".encode()


def test_upload_with_stale_generation_is_refused(bucket: storage.Bucket) -> None:
    blob = put(bucket, "state.json", b"v1", if_generation_match=0)
    stale = blob.generation
    assert stale is not None
    put(bucket, "state.json", b"v2", if_generation_match=stale)
    with pytest.raises(exceptions.PreconditionFailed):
        put(bucket, "state.json", b"v3", if_generation_match=stale)
    assert bucket.blob("state.json").download_as_bytes() == b"v2"


def test_delete_with_stale_generation_is_refused_by_the_proxy_not_the_emulator(
    gcs_server: GcsServer,
    bucket: storage.Bucket,
) -> None:
    stale = put(bucket, "lock", b"holder 1", if_generation_match=0).generation
    assert stale is not None
    current = put(bucket, "lock", b"holder 2", if_generation_match=stale).generation

    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("lock").delete(if_generation_match=stale)
    survivor = bucket.get_blob("lock")
    assert survivor is not None and survivor.generation == current

    # The bare emulator gets this wrong: the same delete succeeds and the new holder's lock is gone.
    direct = gcs_server.direct_client().bucket(bucket.name)
    direct.blob("lock").delete(if_generation_match=stale)
    assert direct.get_blob("lock") is None

    # With the right generation the delete goes through the proxy.
    current = put(bucket, "lock", b"holder 3", if_generation_match=0).generation
    assert current is not None
    bucket.blob("lock").delete(if_generation_match=current)
    assert bucket.get_blob("lock") is None


def test_metadata_patch_bumps_metageneration_and_honours_if_metageneration_match(
    gcs_server: GcsServer,
    bucket: storage.Bucket,
) -> None:
    blob = put(bucket, "obj", b"data", if_generation_match=0)
    blob.reload()
    assert blob.metageneration == 1
    blob.metadata = {"owner": "a"}
    blob.patch(if_metageneration_match=1)
    assert blob.metageneration == 2  # in the PATCH response itself
    blob.reload()
    assert blob.metageneration == 2
    assert [b.metageneration for b in bucket.client.list_blobs(bucket.name)] == [2]

    blob.metadata = {"owner": "b"}
    with pytest.raises(exceptions.PreconditionFailed):
        blob.patch(if_metageneration_match=1)
    fresh = bucket.get_blob("obj")
    assert fresh is not None and fresh.metadata == {"owner": "a"}
    assert fresh.metageneration == 2

    # The emulator itself never bumps metageneration and ignores the precondition.
    raw = gcs_server.direct_client().bucket(bucket.name).get_blob("obj")
    assert raw is not None and raw.metageneration == 1
    raw.metadata = {"owner": "c"}
    raw.patch(if_metageneration_match=99)  # accepted by the bare emulator

    # A new generation starts over at metageneration 1.
    newer = put(bucket, "obj", b"data 2", if_generation_match=blob.generation or 0)
    newer.reload()
    assert newer.metageneration == 1


def test_download_and_reload_with_stale_generation_fail(bucket: storage.Bucket) -> None:
    stale = put(bucket, "obj", b"one", if_generation_match=0).generation
    assert stale is not None
    current = put(bucket, "obj", b"two", if_generation_match=stale).generation
    assert current is not None
    blob = bucket.blob("obj")
    with pytest.raises(exceptions.PreconditionFailed):
        blob.download_as_bytes(if_generation_match=stale)
    assert blob.download_as_bytes(if_generation_match=current) == b"two"
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("obj").reload(if_generation_match=stale)
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("obj").reload(if_metageneration_match=7)
    with pytest.raises(exceptions.NotModified):  # GCS answers 304 to a read whose NotMatch fails
        bucket.blob("obj").reload(if_generation_not_match=current)
    with pytest.raises(exceptions.NotFound):  # a missing object is 404, whatever the condition
        bucket.blob("missing").reload(if_generation_match=123)


def test_resumable_upload_rechecks_preconditions_before_each_chunk(
    gcs_server: GcsServer,
    bucket: storage.Bucket,
) -> None:
    stale = put(bucket, "big", b"small", if_generation_match=0).generation
    assert stale is not None
    data = b"x" * (300 * 1024)
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("big", chunk_size=256 * 1024).upload_from_string(
            data, if_generation_match=stale + 1
        )

    # A session opened while the condition held, then the object changes before the data lands.
    session_url = bucket.blob("big").create_resumable_upload_session(if_generation_match=stale)
    assert session_url.startswith(gcs_server.url)  # the emulator's Location points at the proxy
    put(bucket, "big", b"someone else", if_generation_match=stale)
    response = requests.put(
        session_url, data=data, headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"}
    )
    assert response.status_code == 412
    assert response.json()["error"]["errors"][0]["reason"] == "conditionNotMet"
    assert bucket.blob("big").download_as_bytes() == b"someone else"

    current = bucket.get_blob("big")
    assert current is not None and current.generation is not None
    bucket.blob("big", chunk_size=256 * 1024).upload_from_string(
        data, if_generation_match=current.generation
    )
    assert bucket.blob("big").download_as_bytes() == data


def test_copy_rewrite_and_compose_honour_destination_preconditions(bucket: storage.Bucket) -> None:
    source = put(bucket, "src", b"source", if_generation_match=0)
    put(bucket, "dst", b"existing", if_generation_match=0)
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.copy_blob(source, bucket, "dst", if_generation_match=0)
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("dst").rewrite(source, if_generation_match=0)
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("dst").rewrite(source, if_source_generation_match=(source.generation or 0) + 1)
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("dst").compose([source], if_generation_match=1)
    assert bucket.blob("dst").download_as_bytes() == b"existing"
    bucket.copy_blob(source, bucket, "copy", if_generation_match=0)
    assert bucket.blob("copy").download_as_bytes() == b"source"


# -- faults -------------------------------------------------------------------------------------


def test_every_request_failing_exhausts_the_retry(
    gcs_server: GcsServer,
    bucket: storage.Bucket,
) -> None:
    put(bucket, "obj", b"data", if_generation_match=0)
    gcs_server.proxy.set_faults(rate=1.0, statuses=(503,))
    with pytest.raises(exceptions.ServiceUnavailable) as direct_error:
        bucket.blob("obj").reload(retry=None)
    assert direct_error.value.errors[0]["reason"] == "backendError"
    with pytest.raises(exceptions.RetryError) as retry_error:
        bucket.blob("obj").reload(retry=fast_retry(timeout=2.0))  # several tries, even loaded
    assert isinstance(retry_error.value.cause, exceptions.ServiceUnavailable)
    stats = gcs_server.proxy.stats()
    assert stats["faults_by_kind"]["status"] >= 3  # one without retry, at least two with
    # Bucket operations (what fixtures use) are never faulted.
    assert gcs_server.client().lookup_bucket(bucket.name) is not None


def test_retrying_uploads_survive_a_thirty_percent_failure_rate(
    gcs_server: GcsServer,
    bucket: storage.Bucket,
) -> None:
    gcs_server.proxy.set_faults(rate=0.3, statuses=(503, 429), seed=7)
    for i in range(20):
        put_retrying = bucket.blob(f"obj-{i}")
        put_retrying.upload_from_string(
            f"payload {i}".encode(), if_generation_match=0, retry=fast_retry()
        )
    stats = gcs_server.proxy.stats()
    gcs_server.proxy.clear_faults()
    assert stats["faults"] > 0
    assert stats["requests"]["POST"] == 20 + stats["faults"]
    direct = gcs_server.direct_client().bucket(bucket.name)
    for i in range(20):
        assert direct.blob(f"obj-{i}").download_as_bytes() == f"payload {i}".encode()


def test_reset_delay_and_lost_response_faults(
    gcs_server: GcsServer,
    bucket: storage.Bucket,
) -> None:
    put(bucket, "obj", b"data", if_generation_match=0)
    proxy = gcs_server.proxy

    proxy.set_faults(rate=0.0, reset_rate=1.0, max_faults=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        bucket.blob("obj").reload(retry=None)
    bucket.blob("obj").reload(retry=fast_retry())  # max_faults reached: goes through
    assert proxy.stats()["faults_by_kind"]["reset"] == 1

    proxy.set_faults(rate=0.0, delay=0.2, delay_rate=1.0)
    started = time.monotonic()
    bucket.blob("obj").reload()
    assert time.monotonic() - started >= 0.2

    # Applied, then the answer is lost: the retry of a create-if-absent meets its own object.
    proxy.set_faults(rate=0.0, lost_response_rate=1.0, only_methods=("POST",), max_faults=1)
    with pytest.raises(exceptions.PreconditionFailed):
        put_blob = bucket.blob("created")
        put_blob.upload_from_string(b"mine", if_generation_match=0, retry=fast_retry())
    assert bucket.blob("created").download_as_bytes() == b"mine"
    assert proxy.stats()["faults_by_kind"]["lost_response"] == 1
    assert [e.status for e in proxy.log() if e.method == "POST"] == [200, 0, 412]


def test_stats_count_requests_and_uploaded_bytes(
    gcs_server: GcsServer,
    bucket: storage.Bucket,
) -> None:
    proxy = gcs_server.proxy
    proxy.reset_stats()
    put(bucket, "a", b"a" * 1000, if_generation_match=0)
    put(bucket, "b", b"b" * 2345, if_generation_match=0)
    assert bucket.blob("a").download_as_bytes() == b"a" * 1000
    stats = proxy.stats()
    assert stats["requests"]["POST"] == 2
    assert 3345 <= stats["bytes_uploaded"] < 3345 + 2000  # bodies plus multipart framing
    assert stats["bytes_downloaded"] == 1000
    assert stats["requests_total"] == sum(stats["requests"].values())
    assert stats["faults"] == 0
    uploads = [entry for entry in proxy.log() if entry.method == "POST"]
    assert [entry.status for entry in uploads] == [200, 200]
    assert uploads[0].path == f"/upload/storage/v1/b/{bucket.name}/o"
    assert "ifGenerationMatch=0" in uploads[0].query
    proxy.reset_stats()
    assert proxy.stats()["requests_total"] == 0 and proxy.log() == []


def test_control_endpoint_and_emulator_from_another_process(
    gcs_server: GcsServer,
    bucket: storage.Bucket,
) -> None:
    script = (
        "import json, sys\n"
        "from google.auth.credentials import AnonymousCredentials\n"
        "from google.cloud import storage\n"
        "from tests.support.gcs_proxy import ProxyControl\n"
        "url, bucket = sys.argv[1], sys.argv[2]\n"
        "client = storage.Client(project='test', credentials=AnonymousCredentials())\n"
        "blob = client.bucket(bucket).blob('from-child')\n"
        "blob.upload_from_string(b'hi', if_generation_match=0)\n"
        "ProxyControl(url).set_faults(rate=1.0, statuses=[429], only_methods=['GET'])\n"
        "print(json.dumps(ProxyControl(url).stats()))\n"
    )
    env = {**gcs_server.env, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script, gcs_server.url, bucket.name],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    child_stats = json.loads(done.stdout)
    assert child_stats["requests"]["POST"] >= 1

    with pytest.raises(exceptions.TooManyRequests):
        bucket.blob("from-child").reload(retry=None)
    gcs_server.proxy.clear_faults()
    assert bucket.blob("from-child").download_as_bytes() == b"hi"
    assert gcs_server.proxy.stats()["faults_by_kind"]["status"] == 1


# -- the proxy in-process, and its pure parts ---------------------------------------------------


@pytest.fixture
def local_proxy(gcs_server: GcsServer) -> Iterator[FaultProxy]:
    with FaultProxy(gcs_server.direct_url) as proxy:
        yield proxy


def test_in_process_proxy_restricts_faults_by_object_and_keeps_a_log(
    gcs_server: GcsServer,
    gcs_bucket: str,
    local_proxy: FaultProxy,
) -> None:
    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": local_proxy.url},
    )
    bucket = client.bucket(gcs_bucket)
    local_proxy.set_faults(rate=1.0, statuses=(500,), object_regex=r"^locks/")
    bucket.blob("data/x").upload_from_string(b"1", if_generation_match=0, retry=None)
    with pytest.raises(exceptions.InternalServerError):
        bucket.blob("locks/x").upload_from_string(b"1", if_generation_match=0, retry=None)
    local_proxy.clear_faults()
    bucket.blob("locks/x").upload_from_string(b"1", if_generation_match=0, retry=None)
    statuses = [entry.status for entry in local_proxy.log if entry.method == "POST"]
    assert statuses == [200, 500, 200]
    assert local_proxy.stats()["faults"] == 1
    assert isinstance(local_proxy.log[0], LogEntry)


def test_evaluate_preconditions_follows_gcs() -> None:
    live = {"generation": "5", "metageneration": "2"}
    check = evaluate_preconditions
    assert check({}, live, creating=False, read=True) is None
    assert check({"ifGenerationMatch": 5}, live, creating=False, read=False) is None
    assert check({"ifGenerationMatch": 4}, live, creating=False, read=False) == 412
    assert check({"ifGenerationMatch": 0}, live, creating=True, read=False) == 412
    assert check({"ifGenerationMatch": 0}, None, creating=True, read=False) is None
    assert check({"ifGenerationMatch": 3}, None, creating=True, read=False) == 412
    assert check({"ifGenerationMatch": 3}, None, creating=False, read=True) is None  # -> 404
    assert check({"ifMetagenerationMatch": 2}, live, creating=False, read=False) is None
    assert check({"ifMetagenerationMatch": 1}, live, creating=False, read=False) == 412
    assert check({"ifGenerationNotMatch": 5}, live, creating=False, read=True) == 304
    assert check({"ifGenerationNotMatch": 5}, live, creating=False, read=False) == 412
    assert check({"ifMetagenerationNotMatch": 1}, live, creating=False, read=True) is None
    body = json.loads(gcs_error_body(429))
    assert body["error"]["code"] == 429
    assert body["error"]["errors"][0]["reason"] == "rateLimitExceeded"


def test_fault_config_validates_and_round_trips() -> None:
    config = FaultConfig(rate=0.5, statuses=(503,), only_methods=("get",), max_faults=2)
    assert config.only_methods == ("GET",)
    assert FaultConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    with pytest.raises(ValueError):
        FaultConfig(rate=1.5)
    with pytest.raises(ValueError):
        FaultConfig.from_json({"rate": 0.1, "bogus": 1})


def test_binary_discovery_honours_the_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "fake-gcs-server"
    fake.write_text("#!/bin/sh\n", encoding="utf-8")
    monkeypatch.setenv(BINARY_ENV, str(fake))
    with pytest.raises(GcsEmulatorUnavailable, match="not an executable file"):
        find_fake_gcs_binary()
    fake.chmod(0o755)
    assert find_fake_gcs_binary() == fake
