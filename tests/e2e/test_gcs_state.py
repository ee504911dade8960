"""`substratus apply` against a state in a GCS bucket (fake-gcs-server behind the fault proxy):
faults, concurrent applies from several processes, a SIGKILLed apply recovered after its lease
expires, and a state object edited under its journal. The local runtime runs the workloads for
real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from substratus.state import open_backend
from tests.e2e.conftest import Project
from tests.support.gcs import GcsServer


def _env(gcs: GcsServer, **extra: str) -> dict[str, str]:
    return {**gcs.env, **extra}


def _state(url: str, gcs: GcsServer) -> dict[str, Any]:
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = gcs.url
    try:
        state, _ = open_backend(url, "default", Path(".")).read()
    finally:
        if old is None:
            del os.environ["STORAGE_EMULATOR_HOST"]
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old
    return {} if state is None else state.model_dump(mode="json", exclude_none=True)


def test_apply_survives_injected_faults_and_the_state_is_exact(
    slow_project: Project, gcs_server: GcsServer, gcs_bucket: str
) -> None:
    url = f"gs://{gcs_bucket}/team"
    gcs_server.proxy.set_faults(rate=0.1, statuses=(503, 429), delay=0.2, delay_rate=0.1, seed=7)
    out = slow_project.run("apply", "--auto-approve", "--state", url, env=_env(gcs_server))
    assert "Apply complete! Resources: 4 added" in out.stdout
    assert gcs_server.proxy.stats()["faults"] > 0
    gcs_server.proxy.clear_faults()
    again = slow_project.run("plan", "--detailed-exitcode", "--state", url, env=_env(gcs_server))
    assert "No changes." in again.stdout
    state = _state(url, gcs_server)
    assert sorted(state["resources"]) == [
        "build.app",
        "dataset.data",
        "model.trained",
        "modelserver.api",
    ]
    assert all(r["status"] == "ready" for r in state["resources"].values())
    slow_project.run("destroy", "--auto-approve", "--state", url, env=_env(gcs_server))


def test_concurrent_applies_take_turns_and_lose_no_update(
    tmp_path: Path, gcs_server: GcsServer, gcs_bucket: str
) -> None:
    """Four processes apply at once, three rounds each, each re-running its own Dataset."""
    root = tmp_path / "shared"
    (root / "app").mkdir(parents=True)
    (root / "app" / "load.py").write_text(
        "import os, pathlib\n"
        "(pathlib.Path(os.environ['CONTENT_DIR']) / 'artifacts' / 'x').write_text('x')\n"
    )
    docs = [
        f"kind: Dataset\nname: d{i}\nspec:\n  container: {{local: {{path: ./app}}, "
        f"command: [python3, load.py]}}\n  loader: {{params: {{i: {i}}}}}\n"
        for i in range(4)
    ]
    (root / "substratus.yaml").write_text("---\n".join(docs))
    url = f"gs://{gcs_bucket}/race"
    p = Project(root)
    p.run("apply", "--auto-approve", "--state", url, "--target", "build.app", env=_env(gcs_server))
    procs = []
    for i in range(4):
        script = (
            "import subprocess, sys\n"
            "for _ in range(3):\n"
            "    r = subprocess.run([sys.executable, '-m', 'substratus', 'apply', "
            f"'--auto-approve', '--state', {url!r}, '--lock-timeout', '120s', "
            f"'--target', 'dataset.d{i}', '--replace', 'dataset.d{i}'], "
            "capture_output=True, text=True)\n"
            "    print(r.returncode, flush=True)\n"
            "    if r.returncode:\n"
            "        print(r.stdout, r.stderr, file=sys.stderr)\n"
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", script],
                cwd=root,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **gcs_server.env, "NO_COLOR": "1"},
            )
        )
    codes = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        codes.extend(out.split())
        assert proc.returncode == 0, err
    assert codes == ["0"] * 12, codes
    state = _state(url, gcs_server)
    assert sorted(state["resources"]) == ["build.app"] + [f"dataset.d{i}" for i in range(4)]
    # 1 build + 12 re-runs, each written twice (intent, then the result): nothing was lost.
    assert state["serial"] >= 2 + 12 * 2
    assert p.run("plan", "--detailed-exitcode", "--state", url, env=_env(gcs_server))


def test_sigkilled_apply_is_recovered_after_its_lease_expires(
    slow_project: Project, gcs_server: GcsServer, gcs_bucket: str
) -> None:
    p = slow_project
    url = f"gs://{gcs_bucket}/crash"
    env = _env(gcs_server, SUBSTRATUS_LOCK_LEASE="2s")
    p.edit(
        "substratus.yaml",
        "params: {sleep: 0}\n---\nkind: ModelServer",
        "params: {sleep: 3}\n---\nkind: ModelServer",
    )
    proc = p.popen("apply", "--auto-approve", "--state", url, env=env)
    deadline = time.monotonic() + 60
    while "pending" not in _state(url, gcs_server).get("resources", {}).get("model.trained", {}):
        assert time.monotonic() < deadline, "the trainer never started"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert _state(url, gcs_server)["resources"]["dataset.data"]["status"] == "ready"

    resumed = p.run("apply", "--auto-approve", "--state", url, "--lock-timeout", "60s", env=env)
    assert "took over" in resumed.stderr.lower()
    assert "Apply complete!" in resumed.stdout
    runs = Path(os.environ["RUNS_LOG"]).read_text().split()
    assert runs.count("3") == 1, runs  # the trainer ran once: adopted, not restarted
    final = p.run("plan", "--detailed-exitcode", "--state", url, env=env)
    assert "No changes." in final.stdout
    p.run("destroy", "--auto-approve", "--state", url, env=env)


def _objects(gcs: GcsServer, bucket: str, prefix: str) -> dict[str, tuple[int, bytes]]:
    """Every object under ``prefix`` but the lock: name → (generation, bytes)."""
    found = gcs.direct_client().list_blobs(bucket, prefix=prefix)
    return {
        b.name: (int(b.generation), b.download_as_bytes())
        for b in found
        if not b.name.endswith(".lock")
    }


def test_an_edited_state_object_stops_every_command_until_it_is_recovered(
    slow_project: Project, gcs_server: GcsServer, gcs_bucket: str
) -> None:
    p, env = slow_project, _env(gcs_server)
    url = f"gs://{gcs_bucket}/edited"
    # Without the lock nothing folds the journal at the end, as after a crash.
    p.run("apply", "--auto-approve", "--no-lock", "--state", url, env=env)
    blob = gcs_server.direct_client().bucket(gcs_bucket).blob("edited/default.json")
    doc = json.loads(blob.download_as_bytes())
    doc["resources"]["build.app"]["status"] = "tainted"
    blob.upload_from_string(json.dumps(doc, indent=2))  # as `gcloud storage cp` of an edit would
    before = _objects(gcs_server, gcs_bucket, "edited/")
    assert any(".journal/" in name for name in before)
    runs = Path(os.environ["RUNS_LOG"]).read_text().split()

    for command in (["state", "list"], ["plan"], ["apply", "--auto-approve"]):
        out = p.run(*command, "--state", url, check=1, env=env)
        err = out.stderr
        assert "does not belong to the state" in err, (command, err)
        assert f"{url}/default.json" in err and f"{url}/default.journal/" in err, (command, err)
        assert f"substratus state recover --state {url}" in err, (command, err)
        assert "Traceback" not in err and "to add" not in out.stdout, (command, out.stdout)
        assert _objects(gcs_server, gcs_bucket, "edited/") == before, command
    assert Path(os.environ["RUNS_LOG"]).read_text().split() == runs

    recovered = p.run("state", "recover", "--state", url, env=env)
    assert "Rebuilt the state" in recovered.stdout, recovered.stdout
    kept = _objects(gcs_server, gcs_bucket, "edited/")["edited/default.json.damaged"]
    assert kept[1] == before["edited/default.json"][1]
    listed = p.run("state", "list", "--state", url, env=env).stdout.split()
    assert listed == ["build.app", "dataset.data", "model.trained", "modelserver.api"]
    final = p.run("plan", "--detailed-exitcode", "--state", url, env=env)
    assert "No changes." in final.stdout
    assert Path(os.environ["RUNS_LOG"]).read_text().split() == runs  # nothing ran again
    p.run("destroy", "--auto-approve", "--state", url, env=env)
