"""The quickstart's four workload scripts, run as real subprocesses under the workload contract.

No engine is involved: each test lays out ``$CONTENT_DIR`` by hand the way the local runtime does
(``params.json``, ``data/`` and ``model/`` linked to earlier artifacts, ``artifacts/`` for output)
and runs the script in a copy of its build context.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
TIMEOUT = 60


@dataclass
class Run:
    content: Path
    proc: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def artifacts(self) -> Path:
        return self.content / "artifacts"


def content_dir(
    root: Path, name: str, params: dict[str, Any], links: dict[str, Path] | None = None
) -> Path:
    """A fresh ``/content``: params.json, read-only inputs linked in, no artifacts yet."""
    content = root / name / "content"
    content.mkdir(parents=True)
    (content / "params.json").write_text(json.dumps(params))
    for role, target in (links or {}).items():
        (content / role).symlink_to(target, target_is_directory=True)
    return content


def workload_env(content: Path, params: dict[str, Any], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARAM_")}
    env["CONTENT_DIR"] = str(content)
    for key, value in params.items():
        env["PARAM_" + "".join(c if c.isalnum() else "_" for c in key.upper())] = (
            json.dumps(value) if not isinstance(value, str) else value
        )
    env.update(extra)
    return env


def build_context(root: Path, directory: str) -> Path:
    """A copy of the build context, as the local runtime runs it (the image's WORKDIR)."""
    dest = root / "build" / directory
    if not dest.exists():
        shutil.copytree(QUICKSTART / directory, dest)
    return dest


def run_script(
    root: Path,
    directory: str,
    script: str,
    name: str,
    params: dict[str, Any],
    links: dict[str, Path] | None = None,
) -> Run:
    content = content_dir(root, name, params, links)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, script],
        cwd=build_context(root, directory),
        env=workload_env(content, params),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return Run(content, proc, time.monotonic() - start)


@dataclass
class Pipeline:
    root: Path
    dataset: Run
    base: Run
    tuned: Run


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    root = tmp_path_factory.mktemp("quickstart")
    dataset = run_script(root, "loader", "load.py", "dataset", {"lowercase": True})
    assert dataset.proc.returncode == 0, dataset.proc.stderr
    base = run_script(root, "base", "load.py", "base", {"order": 2})
    assert base.proc.returncode == 0, base.proc.stderr
    tuned = run_script(
        root,
        "trainer",
        "train.py",
        "tuned",
        {"epochs": 3, "weight": 1.0},
        {"data": dataset.artifacts, "model": base.artifacts},
    )
    assert tuned.proc.returncode == 0, tuned.proc.stderr
    return Pipeline(root, dataset, base, tuned)


def test_dataset_loader_publishes_the_corpus(pipeline: Pipeline) -> None:
    corpus = (pipeline.dataset.artifacts / "corpus.txt").read_text()
    meta = json.loads((pipeline.dataset.artifacts / "metadata.json").read_text())
    lines = corpus.splitlines()
    assert 150 <= meta["lines"] == len(lines)
    assert meta["bytes"] == len(corpus.encode())
    assert len(meta["sha256"]) == 64 and meta["lowercase"] is True
    assert corpus == corpus.lower() and all(line.strip() for line in lines)


def test_dataset_loader_keeps_case_and_reads_param_env(tmp_path: Path) -> None:
    content = tmp_path / "content"
    content.mkdir()  # no params.json: the PARAM_* variables are used
    proc = subprocess.run(
        [sys.executable, "load.py"],
        cwd=QUICKSTART / "loader",
        env=workload_env(content, {"lowercase": False}),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    corpus = (content / "artifacts" / "corpus.txt").read_text()
    assert corpus.startswith("The model")
    assert json.loads((content / "artifacts" / "metadata.json").read_text())["lowercase"] is False


def test_base_model_is_an_ngram_table(pipeline: Pipeline) -> None:
    model = json.loads((pipeline.base.artifacts / "model.json").read_text())
    config = json.loads((pipeline.base.artifacts / "config.json").read_text())
    assert model["order"] == 2 == config["order"]
    assert config["name"] == "ngram-2" and config["trained"] is False
    unigrams, after_start = model["counts"][""], model["counts"]["<s>"]
    assert config["vocab_size"] == len(unigrams) > 10
    assert "</s>" in unigrams and all(v > 0 for v in after_start.values())


def test_base_model_rejects_a_bad_order(tmp_path: Path) -> None:
    run = run_script(tmp_path, "base", "load.py", "bad", {"order": 9})
    assert run.proc.returncode == 1
    assert "order" in run.proc.stderr and "Traceback" not in run.proc.stderr


def test_trainer_learns_and_reports_progress(pipeline: Pipeline) -> None:
    out = pipeline.tuned.proc.stdout
    assert [f"epoch {i}/3" in out for i in (1, 2, 3)] == [True] * 3
    metrics = json.loads((pipeline.tuned.artifacts / "metrics.json").read_text())
    losses = metrics["loss"]
    assert len(losses) == 4 and metrics["final_loss"] == losses[-1]
    assert all(a > b for a, b in itertools.pairwise(losses)), losses
    base = json.loads((pipeline.base.artifacts / "model.json").read_text())
    tuned = json.loads((pipeline.tuned.artifacts / "model.json").read_text())
    assert tuned["order"] == 2 and len(tuned["counts"][""]) > len(base["counts"][""])
    # 3 epochs at weight 1: every corpus event is counted three times on top of the base counts.
    assert tuned["counts"]["model"]["reads"] >= base["counts"]["model"]["reads"] + 3
    config = json.loads((pipeline.tuned.artifacts / "config.json").read_text())
    assert config == {**config, "name": "ngram-2-tuned", "trained": True}


def test_trainer_order_3_from_params(pipeline: Pipeline) -> None:
    base = run_script(pipeline.root, "base", "load.py", "base3", {"order": 3})
    assert base.proc.returncode == 0, base.proc.stderr
    links = {"data": pipeline.dataset.artifacts, "model": base.artifacts}
    tuned = run_script(pipeline.root, "trainer", "train.py", "tuned3", {"epochs": 1}, links)
    assert tuned.proc.returncode == 0, tuned.proc.stderr
    model = json.loads((tuned.artifacts / "model.json").read_text())
    assert model["order"] == 3 and "<s> <s>" in model["counts"]


@pytest.mark.parametrize("missing", ["data", "model"])
def test_trainer_fails_clearly_without_inputs(
    pipeline: Pipeline, tmp_path: Path, missing: str
) -> None:
    links = {"data": pipeline.dataset.artifacts, "model": pipeline.base.artifacts}
    del links[missing]
    run = run_script(tmp_path, "trainer", "train.py", "tuned", {"epochs": 1}, links)
    assert run.proc.returncode == 1
    assert run.proc.stderr.startswith("error: no ") and "Traceback" not in run.proc.stderr
    assert not (run.artifacts / "model.json").exists()


def test_trainer_rejects_bad_params(pipeline: Pipeline, tmp_path: Path) -> None:
    links = {"data": pipeline.dataset.artifacts, "model": pipeline.base.artifacts}
    run = run_script(tmp_path, "trainer", "train.py", "tuned", {"epochs": 0}, links)
    assert run.proc.returncode == 1 and "epochs" in run.proc.stderr


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(port: int, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def complete(port: int, **body: Any) -> dict[str, Any]:
    status, payload = request(port, "/v1/completions", json.dumps(body).encode())
    assert status == 200, payload
    return payload


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[str]
    ready_seconds: float


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(pipeline: Pipeline) -> Iterator[Server]:
    content = content_dir(pipeline.root, "server", {}, {"model": pipeline.tuned.artifacts})
    port = free_port()
    log = (content.parent / "server.log").open("w")  # a file, so a chatty server never blocks
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "serve.py"],
        cwd=build_context(pipeline.root, "server"),
        env=workload_env(content, {}, PORT=str(port), QUANTIZATION_BITS="4"),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = start + 20
        while True:
            assert proc.poll() is None, f"server exited: {Path(log.name).read_text()}"
            try:
                if request(port, "/")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.05)
        yield Server(port, proc, time.monotonic() - start)
    finally:
        stop(proc)
        log.close()


def test_end_to_end_is_fast(pipeline: Pipeline, server: Server) -> None:
    total = pipeline.dataset.seconds + pipeline.base.seconds + pipeline.tuned.seconds
    total += server.ready_seconds
    print(f"\nquickstart scripts end to end: {total:.2f}s")
    assert total < 30


def test_server_health(server: Server) -> None:
    status, body = request(server.port, "/")
    assert status == 200
    assert body["status"] == "ok" and body["model"] == "ngram-2-tuned"
    assert body["quantization_bits"] == 4


def test_completion_is_openai_shaped(server: Server) -> None:
    body = complete(server.port, prompt="the model", max_tokens=12)
    assert body["object"] == "text_completion" and body["model"] == "ngram-2-tuned"
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "length"
    assert choice["text"].strip()  # punctuation may attach to the prompt: no leading space
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 12, "total_tokens": 14}


def test_same_seed_same_text(server: Server) -> None:
    texts = [complete(server.port, prompt="the data", max_tokens=20, seed=s) for s in (7, 7, 8, 9)]
    first, again, *others = (t["choices"][0]["text"] for t in texts)
    assert first == again
    assert len({first, *others}) > 1  # different seeds are allowed to differ, and do here


def test_zero_temperature_is_greedy(server: Server) -> None:
    a = complete(server.port, prompt="", max_tokens=8, temperature=0)["choices"][0]["text"]
    b = complete(server.port, prompt="", max_tokens=8, temperature=0, seed=1)["choices"][0]["text"]
    assert a == b and a.strip() and not a.startswith(" ")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"prompt": 3}',
        b'{"prompt": "x", "max_tokens": 0}',
        b'{"prompt": "x", "max_tokens": "5"}',
        b'{"prompt": "x", "max_tokens": true}',
        b'{"prompt": "x", "temperature": -1}',
        b'{"prompt": "x", "seed": "abc"}',
    ],
)
def test_bad_body_is_400(server: Server, body: bytes) -> None:
    status, payload = request(server.port, "/v1/completions", body)
    assert status == 400
    assert payload["error"]["type"] == "invalid_request_error" and payload["error"]["message"]


@pytest.mark.parametrize(("path", "body"), [("/nope", None), ("/v1/chat", b"{}")])
def test_unknown_route_is_404(server: Server, path: str, body: bytes | None) -> None:
    assert request(server.port, path, body)[0] == 404


def test_server_stops_cleanly_on_sigterm(pipeline: Pipeline, tmp_path: Path) -> None:
    content = content_dir(tmp_path, "server", {}, {"model": pipeline.base.artifacts})
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "serve.py"],
        cwd=QUICKSTART / "server",
        env=workload_env(content, {}, PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "serving ngram-2 on http://127.0.0.1:" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        stop(proc)


def test_server_without_model_fails_clearly(tmp_path: Path) -> None:
    content = content_dir(tmp_path, "server", {})
    proc = subprocess.run(
        [sys.executable, "serve.py"],
        cwd=QUICKSTART / "server",
        env=workload_env(content, {}, PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 1 and "no model" in proc.stderr and "Traceback" not in proc.stderr
