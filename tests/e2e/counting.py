"""A pipeline whose jobs count their runs, for asserting "it ran" and "it did not run" by
counting, never by reading substratus's own output (issue #11).

Each job appends its ``name`` param to the file named by ``$RUNS_LOG`` — outside its content
directory and outside the project — before writing ``out.txt`` to its artifacts. ``runs(log)``
counts the lines per name.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

from tests.e2e.conftest import SERVE

JOB = """\
import json, os, pathlib
content = pathlib.Path(os.environ["CONTENT_DIR"])
params = json.loads((content / "params.json").read_text())
with open(os.environ["RUNS_LOG"], "a") as fh:
    fh.write(params["name"] + "\\n")
(content / "artifacts" / "out.txt").write_text(json.dumps(params))
"""


PIPELINE = """\
kind: Dataset
name: data
spec:
  container: {local: {path: ./app}, command: ["python3", "job.py"]}
  loader: {params: {name: data}}
---
kind: Model
name: trained
spec:
  container: {local: {path: ./app}, command: ["python3", "job.py"]}
  trainer:
    dataset: data
    params: {name: trained}
---
kind: ModelServer
name: api
spec:
  container: {local: {path: ./app}, command: ["python3", "serve.py"]}
  model: trained
"""


def write_app(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.py").write_text(JOB)
    (folder / "serve.py").write_text(SERVE)


def only_model(name: str) -> str:
    """The pipeline's trained Model alone (its Dataset is then an external dependency), its
    runs counted as ``name``."""
    doc = PIPELINE.split("---\n")[1]
    return doc.replace("params: {name: trained}", f"params: {{name: {name}}}")


def make_pipeline(root: Path, config: str = PIPELINE) -> Path:
    write_app(root / "app")
    (root / "substratus.yaml").write_text(config)
    return root


def runs(log: Path) -> collections.Counter[str]:
    """How many times each job ran (by its ``name`` param)."""
    if not log.exists():
        return collections.Counter()
    return collections.Counter(line for line in log.read_text().splitlines() if line)


def state(project_dir: Path, workspace: str = "default") -> dict[str, Any]:
    """The state a reader sees (base + journal), as JSON."""
    from substratus.state.local import FileBackend

    backend = FileBackend(project_dir / ".substratus" / "state", workspace)
    current, _ = backend.read()
    return {} if current is None else json.loads(current.to_json())
