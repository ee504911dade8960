"""Model servers on the local runtime, through the CLI: what the plan shows is what runs.

- ``replicas`` above 1 is refused before anything runs (one process per server), 0 and 1 plan;
- an in-place update and a restart after the server died keep its endpoint (the recorded port),
  and the new version answers there; a port taken by another program moves the server and the
  apply says so.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.request
from typing import Any

from tests.e2e.conftest import Project
from tests.support.waiting import wait_for


def server_outputs(project: Project) -> dict[str, Any]:
    outputs: dict[str, dict[str, Any]] = json.loads(project.run("output", "--json").stdout)
    return outputs["modelserver.tuned-ngram"]


def status(endpoint: str) -> dict[str, Any]:
    with urllib.request.urlopen(endpoint + "/", timeout=5) as answer:
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
