"""The Mermaid graphs substratus writes, drawn by the real renderer (mermaid-cli driving Chromium,
installed by ``scripts/mermaid-cli.sh``): the quickstart plan's graph from ``graph`` and the one
inside its pull-request Markdown both render to SVG pictures that show every resource; a broken
flowchart is refused by the same renderer (so it really checks)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ci import unavailable

ROOT = Path(__file__).resolve().parents[2]
INSTALL = "bash scripts/mermaid-cli.sh"


def _mmdc() -> Path:
    given = os.environ.get("SUBSTRATUS_MMDC", "")
    cache = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    found = (
        [given]
        if given
        else sorted(glob.glob(f"{cache}/substratus/mermaid-cli/*/node_modules/.bin/mmdc"))
    )
    for path in reversed(found):
        if Path(path).is_file():
            return Path(path)
    unavailable(f"the Mermaid renderer is not installed; run `{INSTALL}`")


@pytest.fixture(scope="module")
def mmdc() -> Path:
    return _mmdc()


def draw(mmdc: Path, text: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    src, out = tmp / "graph.mmd", tmp / "graph.svg"
    src.write_text(text)
    config = mmdc.parents[2] / "puppeteer.json"
    return subprocess.run(
        [str(mmdc), "-p", str(config), "-i", str(src), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "substratus", *args], cwd=cwd, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_quickstart_plan_graph_renders_to_a_picture(mmdc: Path, tmp_path: Path) -> None:
    project = tmp_path / "quickstart"
    shutil.copytree(
        ROOT / "examples" / "quickstart", project, ignore=shutil.ignore_patterns(".substratus")
    )
    cli("plan", "--out", "plan.json", cwd=project)
    graph = cli("graph", "plan.json", "--format", "mermaid", cwd=project)
    markdown = cli("show", "--format", "markdown", "plan.json", cwd=project)
    block = re.search(r"```mermaid\n(.*?)```", markdown, re.S)
    assert block is not None
    for name, text in (("graph", graph), ("comment", block.group(1))):
        out = tmp_path / name
        out.mkdir()
        drawn = draw(mmdc, text, out)
        assert drawn.returncode == 0, drawn.stderr
        svg = (out / "graph.svg").read_text()
        assert svg.startswith("<svg")
        for address in (
            "dataset.tiny-corpus",
            "model.base-ngram",
            "model.tuned-ngram",
            "modelserver.tuned-ngram",
            "build.trainer",
        ):
            assert address in svg, (name, address)


def test_the_renderer_refuses_a_broken_flowchart(mmdc: Path, tmp_path: Path) -> None:
    drawn = draw(mmdc, 'flowchart LR\n  n0["a"] --> \n  n1["b\n', tmp_path)
    assert drawn.returncode != 0
    assert "Parse error" in drawn.stderr or "Error" in drawn.stderr
