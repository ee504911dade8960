"""The conventions users bring from Terraform, kubectl and the shell (issue #16), through the
real CLI: colour, confirmation, completion, clean machine output, addresses, messages,
workspaces and the README's figures."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import QUICKSTART, TEST_ENV, Project, kill_leftovers
from tests.e2e.counting import PIPELINE, make_pipeline, runs, state
from tests.e2e.terminal import ESCAPE, at_terminal
from tests.support.waiting import wait_for

JOBS = "---\n".join(PIPELINE.split("---\n")[:2])  # the Dataset and the trained Model


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Project]:
    """The counting Dataset → Model pipeline (no server); runs counted in ``tmp_path/runs.log``."""
    p = Project(make_pipeline(tmp_path / "jobs", JOBS))
    os.environ["RUNS_LOG"] = str(tmp_path / "runs.log")
    yield p
    if p.state_file.exists():
        p.run("destroy", "--auto-approve", "--no-lock", check=None, timeout=60)
    kill_leftovers(tmp_path)


def _env(**extra: str) -> dict[str, str]:
    """The tests' environment without NO_COLOR (which the e2e tests set), plus ``extra``."""
    env = {**os.environ, **TEST_ENV, **extra}
    if "NO_COLOR" not in extra:
        env.pop("NO_COLOR", None)
    return env


def _terminal_outputs(p: Project, flags: list[str], env: dict[str, str]) -> dict[str, str]:
    """What plan, apply (with live progress) and a failing command write at a terminal."""
    seen = {}
    code, seen["plan"] = at_terminal(["plan", "--replace", "model.trained", *flags], p.dir, env)
    assert code == 0, seen["plan"]
    code, seen["apply"] = at_terminal(
        ["apply", "--auto-approve", "--replace", "model.trained", *flags], p.dir, env
    )
    assert code == 0, seen["apply"]
    code, seen["error"] = at_terminal(["plan", "-f", "no-such-dir", *flags], p.dir, env)
    assert code == 1 and "Error" in seen["error"], seen["error"]
    return seen


def test_colour_only_at_a_terminal_and_never_when_refused(jobs: Project) -> None:
    jobs.run("apply", "--auto-approve")
    coloured = _terminal_outputs(jobs, [], _env())
    for command, out in coloured.items():  # the test can see colour
        assert ESCAPE in out, f"{command}: {out!r}"
    for flags, env in (
        (["--no-color"], _env()),
        ([], _env(NO_COLOR="1")),
    ):
        plain = _terminal_outputs(jobs, flags, env)
        for command, out in plain.items():
            assert ESCAPE not in out, f"{command} {flags} {env.get('NO_COLOR')}: {out!r}"
        # the progress as plain lines
        assert "model.trained: Replacement complete after" in plain["apply"]
    assert runs(Path(os.environ["RUNS_LOG"]))["trained"] == 4
    # not at a terminal: no colour even when allowed
    piped = jobs.run("plan", "-f", "no-such-dir", check=1, env={"NO_COLOR": ""})
    assert ESCAPE not in piped.stdout + piped.stderr


def _answer(p: Project, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``substratus ARGS`` with ``stdin`` piped to it (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "substratus", *args],
        cwd=p.dir,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **TEST_ENV},
    )


def _no_input_refuses(p: Project, command: str) -> None:
    """``--no-input``: a confirmation is an error, not a prompt, even with a "yes" waiting."""
    out = _answer(p, "yes\n", command, "--no-input")
    assert out.returncode == 1 and "--no-input" in out.stderr, out
    assert "Enter a value" not in out.stdout + out.stderr


def test_the_answer_is_read_from_standard_input_as_terraform_does(jobs: Project) -> None:
    log = Path(os.environ["RUNS_LOG"])
    for refused in ("no\n", "", "yes please\n"):
        out = _answer(jobs, refused, "apply")
        assert out.returncode == 1, out
        assert "Apply cancelled" in out.stderr and "Enter a value" in out.stdout
        assert runs(log) == {} and not jobs.state_file.exists()

    _no_input_refuses(jobs, "apply")
    assert runs(log) == {} and not jobs.state_file.exists()

    approved = _answer(jobs, "yes\n", "apply")
    assert approved.returncode == 0, approved
    assert runs(log) == {"data": 1, "trained": 1}
    assert _answer(jobs, "", "apply", "--no-input").returncode == 0  # nothing to confirm
    _no_input_refuses(jobs, "destroy")

    kept = _answer(jobs, "nope\n", "destroy")
    assert kept.returncode == 1 and "Destroy cancelled" in kept.stderr, kept
    assert "model.trained" in state(jobs.dir)["resources"]
    gone = _answer(jobs, "yes\n", "destroy")
    assert gone.returncode == 0 and "Destroy complete!" in gone.stdout, gone
    assert runs(log) == {"data": 1, "trained": 1}


def _complete_bash(p: Project, line: str) -> list[str]:
    """The candidates the CLI offers bash for the last word of ``line`` (the protocol the
    script of ``substratus completion bash`` speaks: COMP_WORDS, COMP_CWORD)."""
    words = line.split(" ")
    env = {
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
        "_SUBSTRATUS_COMPLETE": "complete_bash",
    }
    out = p.run(env=env)
    return out.stdout.split()


def test_completion_of_commands_flags_and_addresses(jobs: Project, tmp_path: Path) -> None:
    assert _complete_bash(jobs, "substratus pl") == ["plan"]
    assert "--target" in _complete_bash(jobs, "substratus apply --tar")
    assert _complete_bash(jobs, "substratus state sh") == ["show"]
    # addresses from the configuration before anything was applied
    assert _complete_bash(jobs, "substratus plan --target ") == ["dataset.data", "model.trained"]
    jobs.run("apply", "--auto-approve")
    jobs.edit("substratus.yaml", "name: data", "name: corpus")  # data: now in the state only
    jobs.edit("substratus.yaml", "dataset: data", "dataset: corpus")
    assert _complete_bash(jobs, "substratus state show d") == ["dataset.corpus", "dataset.data"]
    assert _complete_bash(jobs, "substratus logs model.") == ["model.trained"]
    (jobs.dir / "substratus.yaml").write_text("kind: [broken")  # the state's still complete
    recorded = ["build.app", "dataset.data", "model.trained"]
    assert _complete_bash(jobs, "substratus output --json ") == recorded

    scripts = {shell: jobs.run("completion", shell).stdout for shell in ("bash", "zsh", "fish")}
    assert "_SUBSTRATUS_COMPLETE=complete_bash" in scripts["bash"]
    assert "compdef _substratus_completion substratus" in scripts["zsh"]
    assert "complete --command substratus" in scripts["fish"]
    # the bash script itself, in bash, calling the CLI back
    shim = tmp_path / "bin" / "substratus"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m substratus "$@"\n')
    shim.chmod(0o755)
    bash = (
        'eval "$(substratus completion bash)"; COMP_WORDS=(substratus state show mod); '
        'COMP_CWORD=3; _substratus_completion substratus; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    path = f"{shim.parent}:{os.environ['PATH']}"
    out = subprocess.run(
        ["bash", "--norc", "-c", bash],
        cwd=jobs.dir,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **TEST_ENV, "PATH": path},
        check=True,
    )
    assert out.stdout.split() == ["model.trained"], out


def test_one_message_for_a_bad_address_naming_the_closest(jobs: Project) -> None:
    jobs.run("apply", "--auto-approve")
    messages = set()
    for args in (
        ["state", "show", "trained"],
        ["state", "rm", "trained"],
        ["plan", "--target", "trained"],
        ["apply", "--replace", "trained"],
        ["logs", "trained"],
        ["output", "trained"],
        ["notebook", "--from", "trained"],
    ):
        err = jobs.run(*args, check=1).stderr
        assert "Did you mean model.trained?" in err, (args, err)
        messages.add(err)
    assert len(messages) == 1, messages
    assert "Error: Invalid address 'trained'" in messages.pop()

    for args in (["state", "show", "model.traned"], ["plan", "--target", "model.traned"]):
        err = jobs.run(*args, check=1).stderr
        assert "Error: No resource model.traned" in err and "Did you mean model.trained?" in err
    assert "Did you mean" not in jobs.run("state", "show", "model.zzzzzzzzz", check=1).stderr


def _ndjson(text: str) -> list[dict[str, object]]:
    """Every line of a ``--json`` stream, strictly: one JSON object per line from the first
    (no blank line, nothing else), each with a ``type`` and an ISO 8601 UTC ``timestamp``."""
    assert text.endswith("\n"), repr(text[-80:])
    events = []
    for line in text[:-1].split("\n"):
        event = json.loads(line)  # a blank or partial line fails here
        assert isinstance(event, dict) and isinstance(event["type"], str), line
        stamp = datetime.fromisoformat(str(event["timestamp"]))
        assert stamp.utcoffset() == timedelta(0), line
        events.append(event)
    return events


def test_every_json_stream_is_ndjson_from_its_first_line(jobs: Project) -> None:
    streams = {
        "plan": jobs.run("plan", "--json"),
        "apply": jobs.run("apply", "--json", "--auto-approve"),
        "plan-refresh-only": jobs.run("plan", "--json", "--refresh-only"),
        "apply-refresh-only": jobs.run("apply", "--json", "--refresh-only", "--auto-approve"),
        "plan-error": jobs.run("plan", "--json", "--target", "trained", check=1),
        "apply-error": jobs.run("apply", "--json", "--target", "model.nope", check=1),
        "apply-cancelled": jobs.run("apply", "--json", "--replace", "model.trained", check=1),
        "destroy": jobs.run("destroy", "--json", "--auto-approve"),
    }
    for name, proc in streams.items():
        events = _ndjson(proc.stdout)
        types = [e["type"] for e in events]
        assert types[0] == "version", (name, types)
        if name.endswith(("error", "cancelled")):
            assert types[1:] == ["diagnostic"], (name, types)
        elif name.startswith("apply") or name == "destroy":
            assert types[-1] == "apply_summary", (name, types)
        else:
            assert types[-1] == "change_summary", (name, types)
    assert "apply_start" in [e["type"] for e in _ndjson(streams["apply"].stdout)]
    assert runs(Path(os.environ["RUNS_LOG"])) == {"data": 1, "trained": 1}


def test_an_interrupted_job_names_its_address_once(slow_project: Project) -> None:
    p = slow_project
    gate = p.dir.parent / "release-trainer"  # the trainer runs until the test opens it
    p.edit(
        "substratus.yaml",
        "params: {sleep: 0}\n---\nkind: ModelServer",
        f'params: {{sleep: 3, gate: "{gate}"}}\n---\nkind: ModelServer',
    )
    log = Path(os.environ["RUNS_LOG"])
    proc = p.popen("apply", "--auto-approve")
    wait_for(lambda: runs(log)["3"] == 1, "the trainer to start", interval=0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    detached = [line for line in out.splitlines() if "detached" in line]
    assert detached and detached[0].startswith("model.trained: detached after"), out
    for line in out.splitlines() + err.splitlines():
        assert line.count("model.trained") <= 1, line
    gate.touch()


def test_workspace_delete_leaves_nothing_behind(jobs: Project) -> None:
    folder = jobs.dir / ".substratus" / "workspaces"
    jobs.run("apply", "--auto-approve", "--workspace", "staging")
    assert {p.name for p in (folder / "staging").iterdir()} >= {"artifacts", "runs", "builds"}
    kept = jobs.run("workspace", "delete", "staging", check=1)
    assert "not empty" in kept.stderr and (folder / "staging").is_dir()
    jobs.run("destroy", "--auto-approve", "--workspace", "staging")
    jobs.run("apply", "--auto-approve", "--workspace", "other")
    jobs.run("workspace", "delete", "staging")
    assert not (folder / "staging").exists() and (folder / "other").is_dir()
    assert not (jobs.dir / ".substratus" / "state" / "staging.json").exists()
    # --force forgets resources that may still use their directory: it is kept, and said
    forced = jobs.run("workspace", "delete", "other", "--force")
    assert "Kept" in forced.stdout and (folder / "other").is_dir()
    jobs.run("workspace", "select", "third")
    jobs.run("apply", "--auto-approve")
    jobs.run("destroy", "--auto-approve")
    jobs.run("workspace", "select", "default")
    shutil.rmtree(folder / "other")  # what the user does once the forgotten ones are gone
    jobs.run("workspace", "delete", "third")
    assert not folder.exists()
    left = sorted(p.name for p in (jobs.dir / ".substratus").iterdir())
    assert left == ["state", "workspace"], left  # the default workspace never ran
    assert runs(Path(os.environ["RUNS_LOG"])) == {"data": 3, "trained": 3}


# What a command of the quickstart README says it prints, quoted after its `#`.
QUOTED = re.compile(
    r"^substratus (?P<args>(?:plan|apply|destroy) [^#]*?)\s+#\s+"
    r"(?P<said>(?:Plan:|Apply complete!|Destroy complete!|No changes\.).*)$",
    re.M,
)


def test_the_quickstart_readme_quotes_what_the_commands_print(project: Project) -> None:
    readme = (QUICKSTART / "README.md").read_text()
    quoted = [(m["args"].split(), m["said"].strip()) for m in QUOTED.finditer(readme)]
    assert [args[0] for args, _ in quoted] == ["plan", "apply", "plan", "destroy"], quoted
    for args, said in quoted:
        assert args[1:3] == ["-f", "examples/quickstart"], args
        out = project.run(args[0], *args[3:]).stdout  # in the copy of examples/quickstart
        assert said in out, f"README: {said!r}; substratus {' '.join(args)} printed:\n{out}"


def test_force_unlock_reads_its_answer_from_standard_input(jobs: Project) -> None:
    from substratus.engine.backend import LockInfo
    from substratus.state.local import FileBackend

    lock_id = FileBackend(jobs.dir / ".substratus" / "state").lock(LockInfo(operation="apply"))
    held = jobs.dir / ".substratus" / "state" / "default.lock"
    refused = _answer(jobs, "no\n", "force-unlock", lock_id)
    assert refused.returncode == 1 and "Force-unlock cancelled" in refused.stderr, refused
    assert held.exists()
    assert _answer(jobs, "yes\n", "force-unlock", lock_id).returncode == 0
    assert not held.exists()
