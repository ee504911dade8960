"""The falcon-7b README's "Preview without a cluster": its commands, exactly as shown, run on a
machine with no Google Cloud credentials and a cluster that does not answer (a closed port), with
a local repository standing in for github.com/substratusai/images (git's ``insteadOf``: no
network). They plan what the README says, with the estimate; a plain plan names what it cannot
reach and prints the README's command."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.offline import git_env, git_mirror, offline_env

ROOT = Path(__file__).resolve().parents[2]
FALCON = ROOT / "examples" / "falcon-7b"
IMAGES_URL = "https://github.com/substratusai/images"


def section(readme: str, title: str) -> str:
    start = readme.index(f"## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def commands(text: str) -> list[list[str]]:
    """The ``substratus`` commands of the first ``sh`` block of ``text``."""
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block is not None, text
    lines = [line.strip() for line in block[1].splitlines() if line.strip()]
    return [shlex.split(line) for line in lines if line.startswith("substratus ")]


def run(root: Path, env: dict[str, str], args: list[str]) -> subprocess.CompletedProcess[str]:
    assert args[0] == "substratus", args
    return subprocess.run(
        [sys.executable, "-m", "substratus", *args[1:]],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_falcon_preview_runs_without_a_cluster_or_credentials(tmp_path: Path) -> None:
    text = section((FALCON / "README.md").read_text(), "Preview without a cluster")
    shown = commands(text)
    assert shown, text
    root = tmp_path / "repo"  # the commands run from the repository's root
    shutil.copytree(FALCON, root / "examples" / "falcon-7b")
    mirror, _ = git_mirror(tmp_path, {"dataset-loader-http/Dockerfile": "FROM python:3.11\n"})
    env = {**offline_env(tmp_path), **git_env(mirror, IMAGES_URL)}

    for args in shown:
        proc = run(root, env, args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Plan: 6 to add, 0 to change, 0 to destroy." in proc.stdout
        assert "Estimate of what this apply will consume" in proc.stdout
        assert "+ $0.67/hour for the servers" in proc.stdout
    quoted = re.findall(r"`(Plan: [^`]*)`", text) + re.findall(r"`(\+ \$[^`]*)`", text)
    assert [" ".join(q.split()) for q in quoted] == [
        "Plan: 6 to add, 0 to change, 0 to destroy.",
        "+ $0.67/hour for the servers",
    ]
    preview = root / "examples" / "falcon-7b" / ".substratus" / "preview"
    assert not preview.exists() or not any(preview.iterdir())  # nothing recorded

    plain = run(root, env, ["substratus", "plan", "-f", "examples/falcon-7b"])
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith(
        "Error: The plan cannot reach the state (gs://my-bucket/substratus/state) and the cluster"
    ), plain.stderr
    printed = re.findall(r"^ +(substratus plan .*)$", plain.stderr, re.M)
    assert [shlex.split(c) for c in printed] == shown
