"""`substratus notebook` on the local runtime, end to end through the CLI: a directory with a
notebook.sh becomes a running notebook (a tiny stand-in for Jupyter that answers /api and honours
NOTEBOOK_TOKEN), in the directory itself; `q` suspends it through the engine (no drift, no
change left), and running it again resumes it with the same artifacts. A directory with no
configuration and no notebook.sh becomes a real Jupyter Server (jupyter-server, a test
dependency) serving its files; Ctrl-C suspends it and leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.conftest import kill_leftovers, leftovers
from tests.support.waiting import wait_for

STAND_IN = """\
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse
TOKEN = os.environ["NOTEBOOK_TOKEN"]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        ok = parse_qs(url.query).get("token", [""])[0] == TOKEN
        if url.path == "/api":
            body = {"version": "stand-in", "cwd": os.getcwd(), "authorized": ok,
                    "content": os.environ.get("CONTENT_DIR", "")}
            self.send_response(200); self.end_headers(); self.wfile.write(json.dumps(body).encode())
        elif url.path == "/":
            self.send_response(200 if ok else 403); self.end_headers()
        else:
            self.send_response(404); self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def make_project(root: Path) -> Path:
    project = root / "project"
    nb = project / "experiments"
    nb.mkdir(parents=True)
    (project / "substratus.yaml").write_text("kind: Project\nspec: {runtime: local}\n")
    (nb / "jupyter_stand_in.py").write_text(STAND_IN)
    (nb / "notebook.sh").write_text(
        '#!/bin/sh\nexec python3 "$(dirname "$0")/jupyter_stand_in.py"\n'
    )
    (nb / "notebook.sh").chmod(0o755)
    return project


def cli(project: Path, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "substratus", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={"NO_COLOR": "1", **os.environ},
    )
    assert check is None or proc.returncode == check, proc.stdout + proc.stderr
    return proc


def session(project: Path, *args: str, browser: bool = False) -> tuple[subprocess.Popen[str], str]:
    opener = project.parent / "browser.sh"  # $BROWSER: what "open the browser" runs
    opener.write_text(f'#!/bin/sh\necho "$1" >> {project.parent / "opened.txt"}\n')
    opener.chmod(0o755)
    flags = [] if browser else ["--no-open-browser"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "substratus", "notebook", *args, *flags],
        env={**os.environ, "BROWSER": f"{opener} %s"},
        cwd=project,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.strip().startswith("http://"):
            return proc, line.strip()
    raise AssertionError("no URL printed:\n" + "".join(seen))


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def quit_session(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate("q\n", timeout=60)
    assert proc.returncode == 0, out
    return out


def test_a_directory_becomes_a_notebook_that_suspends_and_resumes(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    try:
        proc, url = session(project, "-d", "experiments")
        base, _, token = url.partition("/?token=")
        status, api = get(f"{base}/api?token={token}")
        assert status == 200 and api["authorized"] is True
        assert api["cwd"] == str(project / "experiments")  # the directory itself: nothing to sync
        assert get(f"{base}/?token=wrong")[0] == 403
        out = quit_session(proc)
        assert "Suspended notebook.experiments" in out
        assert not _answers(base)  # the process was stopped
        state = json.loads(cli(project, "state", "pull").stdout)["resources"]
        nb = state["notebook.experiments"]
        assert nb["spec"]["suspend"] is True and nb["outputs"]["suspended"] is True
        artifacts = nb["outputs"]["artifacts"]
        assert "No changes." in cli(project, "plan", "--detailed-exitcode").stdout

        proc, url = session(project, "experiments", browser=True)  # resume by name
        base, _, token = url.partition("/?token=")
        opened = project.parent / "opened.txt"
        wait_for(opened.exists, "the browser to be opened", 5)
        assert opened.read_text().split() == [url]  # the browser was opened at the URL
        assert get(f"{base}/api?token={token}")[1]["authorized"] is True
        quit_session(proc)
        state = json.loads(cli(project, "state", "pull").stdout)["resources"]
        assert state["notebook.experiments"]["outputs"]["artifacts"] == artifacts
        assert "No changes." in cli(project, "plan").stdout
    finally:
        cli(project, "destroy", "--auto-approve", "--no-lock", check=None)
        kill_leftovers(tmp_path)


def _answers(base: str) -> bool:
    try:
        urllib.request.urlopen(base + "/api", timeout=2)
    except (urllib.error.URLError, OSError):
        return False
    return True


def test_notebook_mistakes_are_one_clear_message(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "empty").mkdir()
    no_script = without_jupyter(project, "notebook", "-d", "empty", "--no-open-browser")
    assert no_script.returncode == 1, no_script.stdout + no_script.stderr
    assert "No notebook.sh in" in no_script.stderr
    assert "Jupyter is not installed" in no_script.stderr
    assert "pip install jupyterlab" in no_script.stderr
    assert not (project / ".substratus" / "notebooks").exists()  # nothing was written
    unknown = cli(project, "notebook", "nope", "--no-open-browser", check=1)
    assert "No notebook 'nope' in the configuration" in unknown.stderr
    both = cli(project, "notebook", "x", "-d", "experiments", check=1)
    assert "Give one notebook" in both.stderr
    bad_from = cli(project, "notebook", "--from", "model.none", check=1)
    cluster = cli(project, "notebook", "-d", "experiments", "--runtime", "kubernetes", check=1)
    assert "No Dockerfile in" in cluster.stderr  # nothing was contacted or written
    assert "--from model.none: no such Model or Dataset" in bad_from.stderr
    for proc in (no_script, unknown, both, bad_from, cluster):
        assert "Traceback" not in proc.stderr


def without_jupyter(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI where no Jupyter is installed: this Python seen through a link in a directory
    without Jupyter beside it, and a PATH of the system's directories only."""
    bare = project.parent / "bare-python"
    bare.mkdir(exist_ok=True)
    python = bare / "python3"
    if not python.exists():
        python.symlink_to(sys.executable)
    assert not any(Path(d, "jupyter-server").exists() for d in ("/usr/bin", "/bin"))
    return subprocess.run(
        [str(python), "-m", "substratus", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
    )


def test_a_directory_without_configuration_is_a_jupyter_notebook(tmp_path: Path) -> None:
    code = tmp_path / "code"  # no configuration, no notebook.sh: just code (and its YAML)
    code.mkdir()
    (code / "train.py").write_text("print('training')\n")
    (code / "docker-compose.yaml").write_text("services:\n  web: {image: nginx}\n")
    try:
        proc, url = session(code, "-d", ".")
        base, _, token = url.partition("/?token=")
        wait_for(lambda: get(f"{base}/api?token={token}")[0] == 200, "Jupyter's /api", 60)
        status, listing = get(f"{base}/api/contents?token={token}")
        assert status == 200
        names = sorted(i["name"] for i in listing["content"])
        assert names == ["docker-compose.yaml", "train.py"]  # the directory itself
        assert get(f"{base}/api/contents?token=wrong")[0] == 403  # its token is required
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "Suspended notebook.code" in out
        assert "unexpected" not in out and "Traceback" not in out
        assert leftovers(tmp_path) == []  # Jupyter was stopped
        assert not _answers(base)
        state = json.loads(cli(code, "state", "pull").stdout)["resources"]
        assert state["notebook.code"]["outputs"]["suspended"] is True
        assert (code / ".substratus" / "state" / "default.json").is_file()  # the local default
        planned = cli(code, "plan", "--detailed-exitcode")
        assert "No changes." in planned.stdout
        said = planned.stdout + planned.stderr
        assert "docker-compose.yaml is not a substratus configuration: skipped" in said

        proc, url = session(code, "-d", ".")  # the same command resumes it
        base, _, token = url.partition("/?token=")
        assert get(f"{base}/api/contents/train.py?token={token}")[0] == 200
        quit_session(proc)
        assert leftovers(tmp_path) == []
    finally:
        cli(code, "destroy", "--auto-approve", "--no-lock", check=None)
        kill_leftovers(tmp_path)


FROM_MODEL = """\
kind: Dataset
name: data
spec:
  container: {local: {path: ./loader}, command: ["python3", "load.py"]}
---
kind: Model
name: tuned
spec:
  container: {local: {path: ./trainer}, command: ["python3", "train.py"]}
  trainer:
    dataset: data
    params: {epochs: 3}
"""


def test_a_notebook_from_a_model_has_its_code_params_and_dataset(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "substratus.yaml").write_text(FROM_MODEL)
    (project / "loader").mkdir()
    (project / "loader" / "load.py").write_text(
        "import os, pathlib\n"
        "out = pathlib.Path(os.environ['CONTENT_DIR']) / 'artifacts' / 'rows.txt'\n"
        "out.write_text('a\\nb\\n')\n"
    )
    (project / "experiments").rename(project / "trainer")
    (project / "trainer" / "train.py").write_text("print('training')\n")
    try:
        proc, url = session(project, "--from", "model.tuned")
        base, _, token = url.partition("/?token=")
        api = get(f"{base}/api?token={token}")[1]
        assert api["cwd"] == str(project / "trainer")  # the model's code, itself
        content = Path(api["content"])
        assert json.loads((content / "params.json").read_text()) == {"epochs": 3}
        assert (content / "data" / "rows.txt").read_text() == "a\nb\n"  # its dataset, mounted
        quit_session(proc)
        state = json.loads(cli(project, "state", "pull").stdout)["resources"]
        assert "model.tuned" not in state  # only what the notebook needs was applied
        spec = state["notebook.tuned-model"]["spec"]
        assert spec["dataset"] == {"name": "data"} and spec["params"] == {"epochs": 3}
        assert "No changes." not in cli(project, "plan").stdout  # model.tuned is still to do
    finally:
        cli(project, "destroy", "--auto-approve", "--no-lock", check=None)
        kill_leftovers(tmp_path)
