"""The CLI runs no pydantic plugin and skips the loader that looks for them
(``substratus.cli.plugins``), unless the user turns plugins on.

A fake installed distribution declares a pydantic plugin whose import appends a line to a file:
the count of lines says whether a process loaded it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = """\
import os

with open(os.environ["PLUGIN_LOADS"], "a", encoding="utf-8") as f:
    f.write("loaded\\n")


class Plugin:
    def new_schema_validator(self, *args, **kwargs):
        return None, None, None


plugin = Plugin()
"""


def site_with_a_plugin(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    info = site / "fakeplugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pydantic]\nfake = fakeplugin:plugin\n")
    (site / "fakeplugin.py").write_text(PLUGIN, encoding="utf-8")
    return site


def run(tmp_path: Path, args: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    site = site_with_a_plugin(tmp_path)
    env.update(PYTHONPATH=f"{ROOT}{os.pathsep}{site}", PLUGIN_LOADS=str(loads(tmp_path)))
    env.update(extra)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )


def loads(tmp_path: Path) -> Path:
    return tmp_path / "plugin-loads.txt"


def count(tmp_path: Path) -> int:
    path = loads(tmp_path)
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0


def test_pydantic_alone_loads_the_fake_plugin(tmp_path: Path) -> None:
    """The control: the fake distribution is a plugin pydantic finds."""
    code = "from pydantic import BaseModel\nclass M(BaseModel):\n    x: int\n"
    done = run(tmp_path, ["-c", code])
    assert done.returncode == 0, done.stderr
    assert count(tmp_path) == 1


def test_the_cli_loads_no_plugin_and_does_not_look_for_one(tmp_path: Path) -> None:
    done = run(
        tmp_path, ["-X", "importtime", "-m", "substratus", "validate", "-f", "examples/quickstart"]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The configuration is valid" in done.stdout
    assert count(tmp_path) == 0
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "substratus.engine.spec" in imported  # pydantic built the models
    assert "importlib.metadata" not in imported
    assert "pydantic.plugin._loader" not in imported


def test_a_user_who_turns_plugins_on_gets_them(tmp_path: Path) -> None:
    done = run(
        tmp_path,
        ["-m", "substratus", "validate", "-f", "examples/quickstart"],
        PYDANTIC_DISABLE_PLUGINS="",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert count(tmp_path) == 1


def test_the_stand_in_hands_any_other_name_to_the_real_loader() -> None:
    code = (
        "import sys\n"
        "from substratus.cli import plugins\n"
        "plugins.disable()\n"
        "from pydantic.plugin._loader import get_plugins\n"
        "assert tuple(get_plugins()) == ()\n"
        "from pydantic.plugin._loader import PYDANTIC_ENTRY_POINT_GROUP\n"
        "print(PYDANTIC_ENTRY_POINT_GROUP, type(sys.modules[plugins.LOADER]).__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["pydantic", "module"]


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]
current-context: x
"""


def test_the_kubernetes_client_loads_without_its_client_side_validation(tmp_path: Path) -> None:
    """A plan on an unreachable cluster imports the Kubernetes client, and not the optional
    ``kubernetes_validate`` (with its ``jsonschema`` and URI grammar) that our test
    dependencies install and substratus never uses."""
    (tmp_path / "kubeconfig").write_text(KUBECONFIG, encoding="utf-8")
    args = ["plan", "--runtime", "kubernetes", "-f", "examples/quickstart"]
    done = run(
        tmp_path,
        ["-X", "importtime", "-m", "substratus", *args],
        KUBECONFIG=str(tmp_path / "kubeconfig"),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot reach the Kubernetes API server at https://127.0.0.1:9" in done.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert {"kubernetes.client", "kubernetes.dynamic"} <= imported
    assert not {"jsonschema", "rfc3987_syntax"} & imported


def test_kubernetes_validate_is_installed_here_and_loads_without_the_cli() -> None:
    """The control: in this environment ``import kubernetes`` alone loads it."""
    code = "import sys, kubernetes\nprint('jsonschema' in sys.modules)\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]
