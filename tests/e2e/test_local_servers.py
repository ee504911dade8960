"""Model servers on the local runtime, through the CLI: what the plan shows is what runs.

- ``replicas`` above 1 is refused before anything runs (one process per server), 0 and 1 plan;
- an in-place update, a restart after the server died and a re-apply after the applying CLI
  was killed mid roll-out keep its endpoint (the recorded port), and the new version answers
  there; a port taken by another program moves the server and the apply says so.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Project
from tests.support.waiting import wait_for


def server_outputs(project: Project) -> dict[str, Any]:
    outputs: dict[str, dict[str, Any]] = json.loads(project.run("output", "--json").stdout)
    return outputs["modelserver.tuned-ngram"]


def status(endpoint: str) -> dict[str, Any]:
    with urllib.request.urlopen(endpoint + "/", timeout=60) as answer:
        body: dict[str, Any] = json.loads(answer.read())
        return body


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_replicas_above_one_is_refused_on_the_local_runtime(project: Project) -> None:
    project.edit(
        "substratus.yaml", "  model: tuned-ngram\n", "  model: tuned-ngram\n  replicas: 2\n"
    )
    line = project.dir.joinpath("substratus.yaml").read_text().splitlines().index("  replicas: 2")
    for command in ("validate", "plan", "apply"):
        args = [command, "--auto-approve"] if command == "apply" else [command]
        out = project.run(*args, check=1)
        assert "Traceback" not in out.stderr
        assert f"substratus.yaml:{line + 1}, modelserver.tuned-ngram, spec.replicas" in out.stderr
        assert "cannot run 2 replicas" in out.stderr
        assert "replicas: 1" in out.stderr and "--runtime kubernetes" in out.stderr
    assert not project.state_file.exists()
    previous = "2"
    for replicas in ("0", "1"):
        project.edit("substratus.yaml", f"  replicas: {previous}\n", f"  replicas: {replicas}\n")
        previous = replicas
        project.run("validate")
        planned = json.loads(project.run("plan", "--json").stdout.splitlines()[-1])
        assert planned["type"] == "change_summary" and planned["add"] == 8


def test_an_update_keeps_the_endpoint_and_the_new_version_answers_there(project: Project) -> None:
    project.run("apply", "--auto-approve")
    before = server_outputs(project)
    assert status(before["endpoint"])["quantization_bits"] == 16
    project.edit(
        "substratus.yaml",
        "  model: tuned-ngram\n",
        "  model: tuned-ngram\n  quantization: {bits: 8}\n",
    )
    plan = project.run("plan").stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan
    notes = re.sub(r"\n\s*#\s*", " ", plan)  # the estimate's wrapped assumptions, unwrapped
    assert "a local update stops the old process before it starts the new one" in notes
    assert "briefly runs both versions" not in notes
    applied = project.run("apply", "--auto-approve").stdout
    assert "modelserver.tuned-ngram: Modifications complete" in applied
    after = server_outputs(project)
    assert after["endpoint"] == before["endpoint"] and after["pid"] != before["pid"]
    assert not alive(before["pid"])
    assert status(after["endpoint"])["quantization_bits"] == 8
    assert "moves" not in applied

    os.killpg(after["pid"], signal.SIGKILL)  # the server dies: the next apply restarts it ...
    wait_for(lambda: not alive(after["pid"]), "the killed server to exit")
    assert "has been deleted" in project.run("plan").stdout
    project.run("apply", "--auto-approve")
    restarted = server_outputs(project)
    assert restarted["endpoint"] == before["endpoint"]  # ... on the same port
    assert status(restarted["endpoint"])["quantization_bits"] == 8


def test_a_taken_port_moves_the_endpoint_and_the_apply_says_so(project: Project) -> None:
    project.run("apply", "--auto-approve")
    before = server_outputs(project)
    os.killpg(before["pid"], signal.SIGKILL)
    wait_for(lambda: not alive(before["pid"]), "the killed server to exit")
    with socket.socket() as squatter:  # another program listens on the server's port
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", before["port"]))
        squatter.listen()
        applied = project.run("apply", "--auto-approve").stdout
        after = server_outputs(project)
    assert after["port"] != before["port"]
    assert (
        f"modelserver.tuned-ngram: port {before['port']} is in use by another program: the "
        f"endpoint moves from {before['endpoint']} to {after['endpoint']}"
    ) in applied
    assert status(after["endpoint"])["status"] == "ok"


# The slow project's server, answering GET / with its params; it takes PARAM_STARTUP seconds to
# start listening.
SLOW_SERVE = """\
import json, os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
time.sleep(float(os.environ.get("PARAM_STARTUP", "0")))
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"v": os.environ.get("PARAM_V")}).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def test_a_reapply_after_a_crash_mid_rollout_keeps_the_endpoint(slow_project: Project) -> None:
    p = slow_project
    (p.dir / "app" / "serve.py").write_text(SLOW_SERVE)
    p.edit("substratus.yaml", "  model: trained\n", "  model: trained\n  params: {v: 1}\n")
    p.run("apply", "--auto-approve")
    outputs = json.loads(p.run("output", "--json").stdout)["modelserver.api"]
    assert status(outputs["endpoint"]) == {"v": "1"}
    p.edit("substratus.yaml", "params: {v: 1}", "params: {v: 2, startup: 3}")
    proc = p.popen("apply", "--auto-approve")
    old_run = Path(outputs["run_dir"])

    def new_process() -> list[Path]:
        return [f for f in old_run.parent.glob("*/process.json") if f.parent != old_run]

    (record,) = wait_for(new_process, "the new version's process to be recorded")
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI dies while the new version starts
    proc.wait(timeout=60)
    lock = json.loads((p.dir / ".substratus" / "state" / "default.lock").read_text())
    p.run("force-unlock", "--force", lock["id"])
    assert "interrupted" in p.run("plan").stdout
    p.run("apply", "--auto-approve")
    after = json.loads(p.run("output", "--json").stdout)["modelserver.api"]
    assert after["endpoint"] == outputs["endpoint"] and not alive(outputs["pid"])
    assert after["pid"] == json.loads(record.read_text())["pid"]  # adopted, not started again
    assert status(after["endpoint"]) == {"v": "2"}
