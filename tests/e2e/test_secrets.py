"""Secrets and the workload environment, through the CLI (issue #13).

- A workload sees the contract variables, ``container.env``, the documented allowlist and what
  it passes by name (``container.passEnv``) — never the rest of the operator's environment. The
  job itself writes what it saw to a file outside its content directory; a passed value is not
  part of the spec (changing it runs nothing), the list is.
- ``params.json`` is its owner's only from the start, removed when the run succeeds, kept
  (still 0600) when it fails.
- A sensitive param is stored only as a salted scrypt fingerprint: the state holds the salt,
  the saved plan neither the salt nor the value; an unchanged secret runs nothing, a changed one
  runs again.

Runs are counted by the job (one line per run in its ``out`` file), never read from our output.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.sensitive import fingerprint, legacy_fingerprint
from tests.e2e.conftest import Project, kill_leftovers

JOB = """\
import json, os, pathlib, sys
content = pathlib.Path(os.environ["CONTENT_DIR"])
params_file = content / "params.json"
params = json.loads(params_file.read_text())
seen = {"env": dict(os.environ), "params_mode": params_file.stat().st_mode & 0o777}
with open(params["out"], "a") as fh:
    fh.write(json.dumps(seen) + "\\n")
if params.get("fail"):
    sys.exit(3)
(content / "artifacts" / "out.txt").write_text("ok")
"""

CONFIG = """\
kind: Dataset
name: dumped
SENSITIVE
spec:
  container: {local: {path: ./app}, command: ["python3", "job.py"]PASS}
  loader: {params: {out: OUT, pin: "PIN"FAIL}}
"""

PIN = "pin-4821-of-mine"


def config(out: Path, pas: str = "", pin: str = PIN, fail: bool = False) -> str:
    return (
        CONFIG.replace("SENSITIVE", "sensitive: [spec.loader.params.pin]")
        .replace("PASS", f", passEnv: [{pas}]" if pas else "")
        .replace("OUT", json.dumps(str(out)))
        .replace("PIN", pin)
        .replace("FAIL", ", fail: true" if fail else "")
    )


@pytest.fixture
def dumped(tmp_path: Path) -> Iterator[tuple[Project, Path]]:
    root = tmp_path / "proj"
    (root / "app").mkdir(parents=True)
    (root / "app" / "job.py").write_text(JOB)
    out = tmp_path / "seen.jsonl"  # outside the job's content directory
    (root / "substratus.yaml").write_text(config(out))
    p = Project(root)
    yield p, out
    if p.state_file.exists():
        p.run("destroy", "--auto-approve", "--no-lock", check=None)
    kill_leftovers(tmp_path)


OPERATOR = {"AWS_SECRET_ACCESS_KEY": "x-do-not-leak", "FOO": "bar", "SUBSTRATUS_PASS_ENV": ""}


def seen(out: Path) -> list[dict[str, Any]]:
    """What each run of the job saw, in order (one entry per run)."""
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def pulled(p: Project) -> dict[str, Any]:
    return dict(json.loads(p.run("state", "pull").stdout))


def on_disk(p: Project) -> str:
    """Everything the file backend keeps: the state file and its journal."""
    return "".join(f.read_text() for f in sorted(p.state_file.parent.iterdir()) if f.is_file())


def run_files(p: Project, name: str) -> list[Path]:
    return sorted((p.dir / ".substratus").rglob(f"content/{name}"))


def test_a_job_sees_only_its_contract_the_allowlist_and_what_it_passes(
    dumped: tuple[Project, Path],
) -> None:
    p, out = dumped
    p.run("apply", "--auto-approve", env=OPERATOR)
    [first] = seen(out)
    env = first["env"]
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "FOO" not in env
    assert env["PATH"] and env["HOME"]
    assert env["PARAM_PIN"] == PIN and env["CONTENT_DIR"].endswith("content")
    unexpected = {
        k
        for k in env
        if not k.startswith(("PARAM_", "LC_"))
        and k not in {"PATH", "HOME", "LANG", "TMPDIR", "TZ", "CONTENT_DIR", "PYTHONUNBUFFERED"}
        and k != "SUBSTRATUS_ATTEMPT"  # the contract's: 1 on a first attempt
    }
    assert unexpected == set(), unexpected

    # listing FOO is a change of the spec: the job runs again and sees it, and nothing more
    p.run("apply", "--auto-approve", env=OPERATOR)
    assert len(seen(out)) == 1  # nothing changed, nothing ran
    (p.dir / "substratus.yaml").write_text(config(out, pas="FOO"))
    plan = p.run("plan", env=OPERATOR)
    assert "spec.container.passEnv" in plan.stdout
    p.run("apply", "--auto-approve", env=OPERATOR)
    second = seen(out)[1]["env"]
    assert second["FOO"] == "bar"
    assert "AWS_SECRET_ACCESS_KEY" not in second

    # its value is environment, not spec: another value runs nothing
    other = {**OPERATOR, "FOO": "baz"}
    assert "No changes." in p.run("plan", "--detailed-exitcode", env=other).stdout
    p.run("apply", "--auto-approve", env=other)
    assert len(seen(out)) == 2

    # an invalid name is refused at validate, at file:line
    (p.dir / "substratus.yaml").write_text(config(out, pas='"1-bad"'))
    bad = p.run("validate", check=1)
    assert "substratus.yaml:5" in bad.stderr and "1-bad" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_params_json_is_private_and_gone_after_success_kept_after_failure(
    dumped: tuple[Project, Path],
) -> None:
    p, out = dumped
    p.run("apply", "--auto-approve", env=OPERATOR)
    assert seen(out)[0]["params_mode"] == 0o600  # as the job found it
    assert run_files(p, "params.json") == []  # the run succeeded: removed

    (p.dir / "substratus.yaml").write_text(config(out, fail=True))
    p.run("apply", "--auto-approve", check=1, env=OPERATOR)
    assert len(seen(out)) == 2 and seen(out)[1]["params_mode"] == 0o600
    [kept] = run_files(p, "params.json")  # the failed run's directory, kept for debugging
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert json.loads(kept.read_text())["fail"] is True


def test_a_sensitive_param_is_a_salted_fingerprint_that_reruns_only_when_it_changes(
    dumped: tuple[Project, Path],
) -> None:
    p, out = dumped
    p.run("plan", "--out", "first.json", env=OPERATOR)
    assert PIN not in (p.dir / "first.json").read_text()
    p.run("apply", "first.json", env=OPERATOR)
    assert len(seen(out)) == 1

    doc = pulled(p)
    salt = doc["salt"]
    marker = doc["resources"]["dataset.dumped"]["spec"]["loader"]["params"]["pin"]["$sensitive"]
    assert marker == fingerprint(PIN, salt) and marker.startswith("scrypt:")
    assert marker != legacy_fingerprint(PIN)
    assert PIN not in on_disk(p)

    # unchanged: nothing runs, and the salt is kept
    p.run("plan", "--detailed-exitcode", "--out", "same.json", env=OPERATOR)
    p.run("apply", "--auto-approve", env=OPERATOR)
    assert len(seen(out)) == 1
    assert pulled(p)["salt"] == salt

    # changed: it shows as a change of the field, and runs again; neither value nor salt is in
    # the saved plan
    (p.dir / "substratus.yaml").write_text(config(out, pin="pin-9999-of-mine"))
    plan = p.run("plan", "--out", "changed.json", "--detailed-exitcode", check=2, env=OPERATOR)
    assert "spec.loader.params.pin" in plan.stdout
    saved = (p.dir / "changed.json").read_text()
    assert salt not in saved and "pin-9999-of-mine" not in saved and PIN not in saved
    p.run("apply", "changed.json", env=OPERATOR)
    assert len(seen(out)) == 2
    assert "pin-9999-of-mine" not in on_disk(p)
    assert pulled(p)["salt"] == salt
