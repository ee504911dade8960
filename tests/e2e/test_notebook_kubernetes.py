"""`substratus notebook -d DIR` on the real control plane, end to end through the CLI: the
directory is uploaded and built (Kaniko Job), the notebook pod runs on the kwok node, the CLI
port-forwards to it through the API server and kwok (to a real local stand-in for Jupyter), and
a real file-change feed (the watcher, exec'd "in the pod" by kwok on this machine, over the
test's stand-in for /content) syncs the work back: a new file appears locally, a deleted one
goes, a file changed on both sides is kept with the notebook's copy beside it. `q` suspends the
notebook through the engine; running it again resumes it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.kube import ControlPlane
from tests.support.kube_streams import StreamMappings
from tests.support.waiting import wait_for

# python3 "in the pod": the same program, with /content and /tmp mapped into the test's dirs
SHIM = """\
import os, sys
content, tmp = sys.argv[1], sys.argv[2]
args = []
for a in sys.argv[3:]:
    if a == "/content" or a.startswith("/content/"):
        a = content + a[len("/content"):]
    elif a.startswith("/tmp/"):
        a = tmp + a[len("/tmp"):]
    args.append(a)
os.execv(sys.executable, [sys.executable, *args])
"""


class Jupyter(BaseHTTPRequestHandler):
    """A stand-in for Jupyter behind the pod's 8888: /api answers, / needs the token."""

    protocol_version = "HTTP/1.1"
    tokens: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        query = self.path.partition("?")[2]
        token = dict(p.partition("=")[::2] for p in query.split("&") if p).get("token", "")
        type(self).tokens.append(token)
        body = json.dumps({"version": "stand-in"}).encode()
        status = 200 if self.path.startswith("/api") or token else 403
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def recorded(project: Path, env: dict[str, str]) -> dict[str, Any]:
    """The notebook's record in the state (`substratus state pull`)."""
    out = subprocess.run(
        [sys.executable, "-m", "substratus", "state", "pull"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out)["resources"]["notebook.lab"])


@pytest.fixture
def jupyter() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Jupyter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()


def test_a_directory_becomes_a_cluster_notebook_whose_work_syncs_back(
    tmp_path: Path, kube_cluster: ControlPlane, jupyter: int
) -> None:
    ns = kube_cluster.new_namespace("notebook")
    project = tmp_path / "project"
    local = project / "lab"
    local.mkdir(parents=True)
    (local / "Dockerfile").write_text("FROM substratusai/base\nCOPY . /content/\n")
    (local / "train.py").write_text("print('v1')\n")
    (local / "notes.md").write_text("local notes\n")
    (project / "substratus.yaml").write_text(
        "kind: Project\nspec:\n  runtime: kubernetes\n  cloud: kind\n"
        f"  artifacts: {(tmp_path / 'bucket').as_uri()}\n  registry: localhost:5000/team\n"
    )
    remote = tmp_path / "pod-content"  # what the pod's /content holds
    remote.mkdir()
    for name in ("Dockerfile", "train.py", "notes.md"):
        (remote / name).write_bytes((local / name).read_bytes())
    pod_tmp = tmp_path / "pod-tmp"
    pod_tmp.mkdir()
    shim = tmp_path / "python3_in_pod.py"
    shim.write_text(SHIM)
    mappings = StreamMappings(kube_cluster)
    try:
        forward = mappings.forward_port(ns, "lab-notebook", 8888, jupyter)
        mappings.exec_as(
            ns,
            "lab-notebook",
            "notebook",
            workdir=remote,
            commands={"python3": [sys.executable, str(shim), str(remote), str(pod_tmp)]},
        )
        env = {
            **os.environ,
            "KUBECONFIG": str(kube_cluster.kubeconfig),
            "NO_COLOR": "1",
            "SUBSTRATUS_K8S_POLL": "0.2",
        }
        port = free_port()
        busy = socket.socket()  # the port asked for is taken: the next free one is used
        busy.bind(("127.0.0.1", port))
        busy.listen(1)
        args = [
            sys.executable,
            "-m",
            "substratus",
            "notebook",
            "-d",
            "lab",
            "--namespace",
            ns,
            "--no-open-browser",
            "--port",
            str(port),
        ]
        proc = subprocess.Popen(
            args,
            cwd=project,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
        reader.start()
        url = wait_for(
            lambda: next((x.strip() for x in lines if x.strip().startswith("http://")), None),
            "the notebook URL",
            120,
        )
        used = int(url.split(":")[2].split("/")[0])
        assert port < used <= port + 20
        busy.close()
        with urllib.request.urlopen(url, timeout=10) as r:  # through the port-forward
            assert r.status == 200
        token = url.split("token=", 1)[1]
        assert token in Jupyter.tokens  # the Secret's token reached Jupyter

        # the forward drops (here: its mapping goes away): requests fail meanwhile, and the
        # session reconnects by itself once the pod's port answers again
        forward.remove()
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=10)
        forward = mappings.forward_port(ns, "lab-notebook", 8888, jupyter)
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200

        # work in the notebook: a new file, an edit to a file also changed locally, a delete
        (local / "notes.md").write_text("changed here too\n")
        baseline = pod_tmp / "substratus-nbwatch.json"  # saved once the baseline is sent
        wait_for(baseline.is_file, "the watcher's baseline", 120)
        (remote / "results.csv").write_text("epoch,loss\n1,0.5\n")
        (remote / "notes.md").write_text("changed in the notebook\n")
        (remote / "train.py").unlink()
        (remote / ".ipynb_checkpoints").mkdir()
        (remote / ".ipynb_checkpoints" / "x.ipynb").write_text("{}")
        wait_for(lambda: (local / "results.csv").is_file(), "results.csv synced back", 120)
        assert (local / "results.csv").read_text() == "epoch,loss\n1,0.5\n"
        wait_for(lambda: not (local / "train.py").exists(), "train.py deleted locally", 120)
        wait_for(lambda: (local / "notes.remote.md").is_file(), "the conflict copy", 120)
        assert (local / "notes.md").read_text() == "changed here too\n"  # never overwritten
        assert (local / "notes.remote.md").read_text() == "changed in the notebook\n"
        assert not (local / ".ipynb_checkpoints").exists()

        assert proc.stdin is not None
        proc.stdin.write("q\n")  # the reader thread alone reads stdout (it ends at EOF)
        proc.stdin.close()
        proc.wait(timeout=120)
        reader.join(timeout=30)
        assert not reader.is_alive()
        text = "".join(lines)
        assert proc.returncode == 0, text
        assert "sync: conflict notes.md" in text
        assert "Suspended notebook.lab" in text
        status, _ = kube_cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/lab-notebook")
        assert status == 404  # suspended: the pod is gone, the rest stays
        plan = subprocess.run(
            [sys.executable, "-m", "substratus", "plan", "--namespace", ns],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
        )
        assert "No changes." in plan.stdout, plan.stdout + plan.stderr

        # run it again: the same notebook resumes, with the same artifacts
        state = recorded(project, env)
        again = subprocess.Popen(
            args,
            cwd=project,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert again.stdout is not None
        for line in again.stdout:
            if line.strip().startswith("http://"):
                break
        pod_status, _ = kube_cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/lab-notebook")
        assert pod_status == 200
        out, _ = again.communicate("q\n", timeout=120)
        assert again.returncode == 0, out
        resumed = recorded(project, env)
        assert resumed["outputs"]["artifacts"] == state["outputs"]["artifacts"]
    finally:
        mappings.close()
        subprocess.run(
            [sys.executable, "-m", "substratus", "destroy", "--auto-approve", "--namespace", ns],
            cwd=project,
            env={**os.environ, "KUBECONFIG": str(kube_cluster.kubeconfig)},
            capture_output=True,
        )
