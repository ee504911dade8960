"""CLI contract: errors without tracebacks, help, state commands, git sources, targeting."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Project


def test_user_errors_are_diagnostics_with_lines_and_exit_1(project: Project) -> None:
    (project.dir / "broken.yaml").write_text(
        "kind: Model\nname: extra\nspec:\n  container: {image: some/image}\n"
        "  loader: {params: {}}\n---\nkind: ModelServer\nname: dangling\nspec:\n"
        "  container: {local: {path: ./server}, command: [python3, serve.py]}\n"
        "  model: nowhere\n"
    )
    out = project.run("validate", check=1)
    assert "Traceback" not in out.stderr
    assert "broken.yaml:4, model.extra, spec.container.image" in out.stderr
    assert "cannot run on the local runtime" in out.stderr
    plan = project.run("plan", check=1)
    assert "Traceback" not in plan.stderr
    assert not (project.dir / ".substratus" / "state" / "default.json").exists()

    (project.dir / "broken.yaml").write_text(
        "kind: ModelServer\nname: dangling\nspec:\n"
        "  container: {local: {path: ./server}, command: [python3, serve.py]}\n"
        "  model: tuned-ngrm\n"
    )
    out = project.run("validate", check=1)
    assert "broken.yaml:5, modelserver.dangling, spec.model" in out.stderr
    assert "Did you mean model.tuned-ngram?" in out.stderr
    assert "not found in the artifact store (validate reads no state)" in out.stderr
    js = json.loads(project.run("validate", "--json", check=1).stdout)
    assert js["valid"] is False and js["diagnostics"][0]["line"] == 5


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "--target", "not-an-address"],
        ["plan", "--lock-timeout", "soon"],
        ["plan", "--destroy", "--refresh-only"],
        ["apply", "missing-plan.json"],
        ["plan", "--no-such-flag"],
        ["state", "show", "model.nope"],
        ["output", "model.nope"],
    ],
)
def test_bad_flags_and_arguments_exit_1_without_traceback(
    project: Project, args: list[str]
) -> None:
    out = project.run(*args, check=1)
    assert "Traceback" not in out.stderr and out.stderr.strip()


def test_help_on_every_command(project: Project) -> None:
    for cmd in (
        ["validate"],
        ["plan"],
        ["apply"],
        ["destroy"],
        ["show"],
        ["state", "list"],
        ["state", "show"],
        ["state", "rm"],
        ["state", "pull"],
        ["state", "push"],
        ["force-unlock"],
        ["output"],
        ["version"],
    ):
        out = project.run(*cmd, "--help")
        assert "Usage:" in out.stdout and len(out.stdout) > 120
    assert project.run("version").stdout.startswith("substratus ")


def test_state_commands_and_push_safety(project: Project) -> None:
    project.run("apply", "--auto-approve", "--target", "model.base-ngram")
    assert project.run("state", "list").stdout.split() == ["build.base", "model.base-ngram"]
    shown = json.loads(project.run("state", "show", "model.base-ngram").stdout)
    assert shown["model.base-ngram"]["status"] == "ready"
    pulled = project.run("state", "pull").stdout
    backup = project.dir / "backup.json"
    backup.write_text(pulled)
    outputs = project.run("output", "model.base-ngram").stdout
    assert 'model.base-ngram.artifacts = "file://' in outputs

    project.run("state", "rm", "build.base")
    assert project.run("state", "list").stdout.split() == ["model.base-ngram"]
    older = project.run("state", "push", str(backup), check=1)
    assert "older serial" in older.stderr
    other = json.loads(pulled)
    other["lineage"] = "00000000-0000-0000-0000-000000000000"
    (project.dir / "other.json").write_text(json.dumps(other))
    assert "different lineage" in project.run("state", "push", "other.json", check=1).stderr
    project.run("state", "push", "--force", str(backup))
    assert project.run("state", "list").stdout.split() == ["build.base", "model.base-ngram"]


def test_replace_reruns_and_refresh_only_records_drift(project: Project) -> None:
    project.run("apply", "--auto-approve", "--target", "model.base-ngram")
    plan = project.run("plan", "--replace", "model.base-ngram", "--target", "model.base-ngram")
    assert "replacement requested with --replace" in plan.stdout
    assert "Resource targeting is in effect" in plan.stdout
    artifacts = json.loads(project.run("output", "--json").stdout)["model.base-ngram"][
        "artifacts_path"
    ]
    subprocess.run(["rm", "-rf", artifacts], check=True)
    refresh = project.run("plan", "--refresh-only", "--detailed-exitcode", check=2)
    assert "# model.base-ngram has been deleted" in refresh.stdout
    project.run("apply", "--refresh-only", "--auto-approve", "--target", "model.base-ngram")
    assert "model.base-ngram" not in project.run("state", "list").stdout


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_git_source_resolved_to_commit_at_plan_time(project: Project, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "loader").mkdir(parents=True)
    (repo / "loader" / "load.py").write_text((project.dir / "loader" / "load.py").read_text())
    (repo / "loader" / "corpus.txt").write_text("a tiny corpus\nfrom git\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(
        repo, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qam", "one", "--allow-empty"
    )
    _git(repo, "add", ".")
    _git(repo, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "two")
    first = _git(repo, "rev-parse", "HEAD")
    project.edit(
        "substratus.yaml",
        "local: {path: ./loader}",
        f"git: {{url: {repo}, ref: main, path: loader}}",
    )
    plan = project.run("plan")
    assert f'+ commit      = "{first}"' in plan.stdout or f'"{first}"' in plan.stdout
    project.run("apply", "--auto-approve", "--target", "dataset.tiny-corpus")
    data = json.loads(project.run("output", "--json").stdout)["dataset.tiny-corpus"]
    assert "from git" in (Path(data["artifacts_path"]) / "corpus.txt").read_text()

    (repo / "loader" / "corpus.txt").write_text("a tiny corpus\nfrom git, edited\n")
    _git(repo, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qam", "three")
    second = _git(repo, "rev-parse", "HEAD")
    plan = project.run("plan", "--target", "dataset.tiny-corpus", "--detailed-exitcode", check=2)
    assert f'commit = "{first}" -> "{second}"' in plan.stdout
    assert "# dataset.tiny-corpus must be replaced" in plan.stdout
    assert re.search(r"because build\.repo-loader-[0-9a-f]{6} changed", plan.stdout)


def _run_with_tty(project: Project, answer: str, *args: str) -> tuple[int, str]:
    import os
    import pty
    import sys

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "substratus", *args],
        cwd=project.dir,
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    os.close(slave)
    os.write(master, (answer + "\n").encode())
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    return proc.returncode, out


def test_apply_asks_for_yes_and_anything_else_changes_nothing(project: Project) -> None:
    code, out = _run_with_tty(project, "no", "apply", "--target", "model.base-ngram")
    assert code == 1 and "Apply cancelled" in out and "Only 'yes' will be accepted" in out
    assert not project.state_file.exists()
    code, out = _run_with_tty(project, "yes", "apply", "--target", "model.base-ngram")
    assert code == 0, out
    assert "Apply complete! Resources: 2 added" in out
    no_tty = project.run("destroy", check=1)
    assert "--auto-approve" in no_tty.stderr


def test_falcon_example_validates_for_kubernetes() -> None:
    from tests.e2e.conftest import ROOT

    proc = subprocess.run(
        [sys.executable, "-m", "substratus", "validate", "-f", str(ROOT / "examples/falcon-7b")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "runtime kubernetes" in proc.stdout


SENSITIVE = """\
kind: Dataset
name: private
spec:
  container: {local: {path: ./app}, command: ["python3", "load.py"]}
  loader: {params: {token: TOKEN, rows: 3}}
sensitive: [spec.loader.params.token]
"""

LOAD_TOKEN = """\
import json, os, pathlib
content = pathlib.Path(os.environ["CONTENT_DIR"])
params = json.loads((content / "params.json").read_text())
assert params["token"] == os.environ["PARAM_TOKEN"]
(content / "artifacts" / "seen.txt").write_text(params["token"])
"""


def test_sensitive_params_never_reach_output_plan_or_state(tmp_path: Path) -> None:
    root = tmp_path / "s"
    (root / "app").mkdir(parents=True)
    (root / "app" / "load.py").write_text(LOAD_TOKEN)
    (root / "substratus.yaml").write_text(SENSITIVE.replace("TOKEN", "hunter2-secret"))
    p = Project(root)
    plan = p.run("plan", "--out", "p.json")
    assert re.search(r"loader\.params\.token +\= \(sensitive\)", plan.stdout)
    p.run("apply", "p.json")
    seen = json.loads(p.run("output", "--json").stdout)["dataset.private"]["artifacts_path"]
    assert (Path(seen) / "seen.txt").read_text() == "hunter2-secret"  # the job got the value
    assert "hunter2" not in (root / "p.json").read_text()
    for stored in p.state_file.parent.iterdir():  # state, its journal and backup
        assert "hunter2" not in stored.read_text(errors="replace"), stored
    assert "hunter2" not in p.run("state", "pull").stdout  # base and journal

    (root / "substratus.yaml").write_text(SENSITIVE.replace("TOKEN", "rotated-secret"))
    changed = p.run("plan", "--detailed-exitcode", check=2)
    assert re.search(
        r"loader\.params\.token +\= \(sensitive\) -> \(sensitive\)  # forces replacement",
        changed.stdout,
    )
    assert "secret" not in changed.stdout

    (root / "substratus.yaml").write_text(
        SENSITIVE.replace("TOKEN", "x").replace("params.token]", "params.nope]")
    )
    bad = p.run("validate", check=1)
    assert "Invalid sensitive path 'spec.loader.params.nope'" in bad.stderr
    assert "substratus.yaml:6" in bad.stderr


def test_a_removed_resource_is_never_called_missing_from_the_state(slow_project: Project) -> None:
    p = slow_project
    p.run("apply", "--auto-approve")
    config = p.dir / "substratus.yaml"
    dataset, model, server = config.read_text().split("---\n")
    config.write_text(model + "---\n" + server)
    line = config.read_text().splitlines().index("    dataset: data") + 1
    for args in (["plan"], ["apply", "--auto-approve"], ["plan", "--target", "dataset.data"]):
        out = p.run(*args, check=1).stderr
        assert "Traceback" not in out and "not found in the state" not in out
        assert (
            "dataset.data was removed from the configuration but model.trained still uses it" in out
        )
        assert f"substratus.yaml:{line}, model.trained, spec.trainer.dataset" in out
        assert "still recorded in the state" in out
        assert "Keep dataset.data in the configuration, or first remove or repoint" in out
    for address in ("dataset.data", "default/dataset.data"):  # as recorded, or namespaced
        assert '"dataset.data"' in p.run("state", "show", address).stdout
        assert "dataset.data.artifacts = " in p.run("output", address).stdout

    config.write_text(dataset + "---\n" + model)  # the server is removed, nothing uses it
    replace = p.run("plan", "--replace", "modelserver.api", check=1).stderr
    assert "Cannot replace modelserver.api: it was removed from the configuration" in replace
    assert "still recorded in the state" in replace and "Traceback" not in replace
    for address in ("modelserver.api", "default/modelserver.api"):
        targeted = p.run("plan", "--target", address).stdout
        assert "Plan: 0 to add, 0 to change, 1 to destroy." in targeted
