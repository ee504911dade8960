"""A job on ``resources.nodes: N`` on the local runtime (issue #15), through the real CLI: N rank
processes that really rendezvous (rank 0 listens on ``MASTER_ADDR:MASTER_PORT``, the others
connect and send their rank), all writing into the same artifacts; one failed rank stops the
others and fails the run; ``kill -9`` of the CLI leaves the ranks running and the next apply
adopts them. Runs are counted in ``$RUNS_LOG`` (a line per rank, outside the content directory),
never read from substratus' own output."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import Project, kill_leftovers
from tests.e2e.counting import state
from tests.support.waiting import wait_for

RENDEZVOUS = """\
import json, os, pathlib, socket, sys, time
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
assert os.environ["NODE_RANK"] == str(rank), os.environ["NODE_RANK"]
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
content = pathlib.Path(os.environ["CONTENT_DIR"])
params = json.loads((content / "params.json").read_text())
with open(os.environ["RUNS_LOG"], "a") as fh:
    fh.write(f"{params['name']} {rank} {world} {os.getpid()} {os.environ['SUBSTRATUS_ATTEMPT']}\\n")
print(f"hello from rank {rank} of {world} at {addr}", flush=True)
deadline = time.monotonic() + 120
attempt = os.environ["SUBSTRATUS_ATTEMPT"]
if rank == params.get("fail_rank") and int(attempt) <= params["failing"]:
    def started():  # the ranks of this attempt that wrote their line
        lines = open(os.environ["RUNS_LOG"]).read().splitlines()
        return sum(1 for x in lines if x.split()[-1] == attempt)
    while started() < world and time.monotonic() < deadline:
        time.sleep(0.05)  # fail once every rank has started: they are there to be stopped
    sys.exit(3)
if rank == 0:
    server = socket.create_server((addr, port))
    server.settimeout(120)
    heard = []
    while len(heard) < world - 1:
        conn, _ = server.accept()
        with conn:
            heard.append(int(conn.makefile().readline()))
    (content / "artifacts" / f"heard-by-{rank}.json").write_text(json.dumps(sorted(heard)))
else:
    while True:
        try:
            conn = socket.create_connection((addr, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(4)
            time.sleep(0.05)
    with conn:
        conn.sendall(f"{rank}\\n".encode())
    (content / "artifacts" / f"rank-{rank}.txt").write_text("sent")
gate = params.get("gate")
while gate and not os.path.exists(gate) and time.monotonic() < deadline:
    time.sleep(0.05)  # every rank held by the test (120 s at most)
"""

CONFIG = """\
kind: Dataset
name: data
spec:
  container: {local: {path: ./app}, command: ["python3", "rendezvous.py"]}
  loader: {params: {name: data, fail_rank: FAIL, failing: FAILING, gate: GATE}}
  resources: {nodes: NODES}
  retries: RETRIES
"""


@pytest.fixture
def nodes_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    root = tmp_path / "nodes"
    (root / "app").mkdir(parents=True)
    (root / "app" / "rendezvous.py").write_text(RENDEZVOUS)
    monkeypatch.setenv("RUNS_LOG", str(tmp_path / "runs.log"))
    p = Project(root)
    yield p
    if p.state_file.exists():
        p.run("destroy", "--auto-approve", "--no-lock", check=None, timeout=60)
    kill_leftovers(tmp_path)


def configure(
    p: Project,
    nodes: int,
    fail: int = -1,
    gate: Path | None = None,
    retries: int = 0,
    failing: int = 100,
) -> None:
    """Rank ``fail`` exits 3 in its first ``failing`` attempts."""
    text = CONFIG.replace("NODES", str(nodes)).replace("FAILING", str(failing))
    text = text.replace("FAIL", str(fail)).replace("RETRIES", str(retries))
    (p.dir / "substratus.yaml").write_text(text.replace("GATE", json.dumps(str(gate or ""))))


def runs() -> list[tuple[str, int, int, int]]:
    """(name, rank, world, pid) of every rank that started, in order."""
    return [(n, r, w, pid) for n, r, w, pid, _ in attempts()]


def attempts() -> list[tuple[str, int, int, int, int]]:
    """(name, rank, world, pid, SUBSTRATUS_ATTEMPT) of every rank that started, in order."""
    log = Path(os.environ["RUNS_LOG"])
    lines = log.read_text().split("\n") if log.exists() else []
    return [
        (n, int(r), int(w), int(pid), int(a)) for n, r, w, pid, a in (x.split() for x in lines if x)
    ]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def artifacts(p: Project) -> Path:
    return Path(state(p.dir)["resources"]["dataset.data"]["outputs"]["artifacts_path"])


def test_three_ranks_rendezvous_and_share_the_artifacts(nodes_project: Project) -> None:
    p = nodes_project
    configure(p, 3)
    plan = p.run("plan")
    assert re.search(r"\+ resources\.nodes +\= 3\n", plan.stdout)
    assert "3 nodes × (2 vCPU, 10 GB)" in plan.stdout
    p.run("apply", "--auto-approve")
    started = runs()
    assert sorted((r, w) for _, r, w, _ in started) == [(0, 3), (1, 3), (2, 3)]  # each once
    out = artifacts(p)
    assert json.loads((out / "heard-by-0.json").read_text()) == [1, 2]
    assert (out / "rank-1.txt").is_file() and (out / "rank-2.txt").is_file()
    log = p.run("logs", "dataset.data").stdout
    for rank in range(3):
        assert f"[rank {rank}] hello from rank {rank} of 3 at 127.0.0.1" in log
    assert "No changes." in p.run("plan").stdout
    assert len(runs()) == 3  # nothing ran again


def test_one_failed_rank_fails_the_run_and_stops_the_others(nodes_project: Project) -> None:
    p = nodes_project
    configure(p, 3, fail=1)  # rank 0 would wait for rank 1 for two minutes
    apply = p.run("apply", "--auto-approve", check=1)
    assert "dataset job exited with code 3: rank 1 of 3 exited with code 3" in apply.stderr, (
        apply.stderr
    )
    started = runs()
    assert sorted(r for _, r, _, _ in started) == [0, 1, 2]
    for _, rank, _, pid in started:
        assert not alive(pid), f"rank {rank} (pid {pid}) is still running"
    record = state(p.dir)["resources"]["dataset.data"]  # tainted: no version
    assert record["status"] == "tainted" and not record.get("digest")
    assert "[rank 1] hello from rank 1 of 3" in apply.stderr  # the log's tail, every rank
    assert "Traceback" not in apply.stderr


def test_a_failed_rank_retries_the_whole_run_as_one(nodes_project: Project) -> None:
    p = nodes_project
    configure(p, 3, fail=1, retries=2, failing=1)  # rank 1 fails in attempt 1 only
    apply = p.run("apply", "--auto-approve")
    started = attempts()
    by_attempt = {a: sorted(r for _, r, _, _, n in started if n == a) for a in (1, 2, 3)}
    assert by_attempt == {1: [0, 1, 2], 2: [0, 1, 2], 3: []}  # every rank, twice
    for _, rank, _, pid, _ in started:
        assert not alive(pid), f"rank {rank} (pid {pid}) is still running"
    assert json.loads((artifacts(p) / "heard-by-0.json").read_text()) == [1, 2]
    said = apply.stdout + apply.stderr
    assert "attempt 1 failed (rank 1 of 3 exited with code 3" in said, said
    run = state(p.dir)["resources"]["dataset.data"]["last_run"]
    assert run["outcome"] == "succeeded" and run["attempts"] == 2
    [failed] = run["failed_attempts"]
    assert failed["attempt"] == 1 and failed["reason"].startswith("rank 1 of 3 exited with code 3")
    assert "No changes." in p.run("plan").stdout
    assert len(attempts()) == 6  # nothing ran again


def test_kill_9_of_the_cli_leaves_the_ranks_running_and_the_next_apply_adopts_them(
    nodes_project: Project,
) -> None:
    p = nodes_project
    gate = p.dir.parent / "release"
    configure(p, 2, gate=gate)
    cli = p.popen("apply", "--auto-approve")

    def pending_and_both_started() -> bool:
        if not p.state_file.exists() or len(runs()) < 2:
            return False
        return "pending" in state(p.dir)["resources"].get("dataset.data", {})

    wait_for(pending_and_both_started, "both ranks started and the run recorded as pending")
    os.killpg(cli.pid, 9)
    cli.wait(timeout=60)
    assert all(alive(pid) for _, _, _, pid in runs())  # the ranks hold on
    gate.touch()
    p.run("apply", "--auto-approve")
    assert sorted(r for _, r, _, _ in runs()) == [0, 1]  # adopted, not started again
    assert json.loads((artifacts(p) / "heard-by-0.json").read_text()) == [1]
    assert "No changes." in p.run("plan").stdout


def test_ranks_a_killed_supervisor_left_are_stopped_by_destroy(nodes_project: Project) -> None:
    p = nodes_project
    gate = p.dir.parent / "release"
    configure(p, 2, gate=gate)
    cli = p.popen("apply", "--auto-approve")
    wait_for(lambda: len(runs()) == 2, "both ranks to start")
    [supervisor] = p.dir.glob(".substratus/runs/default/datasets/data/*/supervisor.json")
    os.kill(json.loads(supervisor.read_text())["pid"], 9)  # its ranks are left behind
    cli.communicate(timeout=120)
    assert cli.returncode == 1
    pids = [pid for _, _, _, pid in runs()]
    assert all(alive(pid) for pid in pids)  # waiting for the gate, they write nothing
    p.run("destroy", "--auto-approve")
    assert not any(alive(pid) for pid in pids)
    assert sorted(r for _, r, _, _ in runs()) == [0, 1]


def _readme_torchrun_command() -> list[str]:
    """The ``command`` of the README's torchrun example (the YAML block that mentions it)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    [block] = [b for b in blocks if "torchrun" in b]
    command = yaml.safe_load(block)["spec"]["container"]["command"]
    assert isinstance(command, list)
    return [str(part) for part in command]


def test_the_readme_torchrun_command_gives_every_rank_its_place(
    nodes_project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's command line, run by the local runtime on 2 nodes and on 1, with a stand-in
    ``torchrun`` on PATH that writes its arguments to ``$RUNS_LOG``."""
    p = nodes_project
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "torchrun"
    fake.write_text('#!/bin/sh\necho "$@" >> "$RUNS_LOG"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    command = json.dumps(_readme_torchrun_command())
    for nodes in (2, 1):
        config = CONFIG.replace('["python3", "rendezvous.py"]', command)
        config = config.replace("NODES", str(nodes)).replace("retries: RETRIES\n", "")
        (p.dir / "substratus.yaml").write_text(config)
        p.run("apply", "--auto-approve")
    lines = Path(os.environ["RUNS_LOG"]).read_text().splitlines()
    assert len(lines) == 3, lines  # two ranks, then one
    args = [dict(a.lstrip("-").split("=", 1) for a in line.split()[:-1]) for line in lines]
    ports = {a["master_port"] for a in args[:2]}
    assert len(ports) == 1 and ports != {"29500"}, args  # the free port of that run
    assert sorted(a["node_rank"] for a in args[:2]) == ["0", "1"]
    for a in args[:2]:
        assert (a["nnodes"], a["master_addr"], a["nproc_per_node"]) == ("2", "127.0.0.1", "4")
    assert args[2] == {
        "nnodes": "1",
        "node_rank": "0",
        "master_addr": "127.0.0.1",
        "master_port": "29500",
        "nproc_per_node": "4",
    }
    assert all(line.endswith(" train.py") for line in lines)
