"""Model servers on the local runtime, through the CLI: what the plan shows is what runs.

- ``replicas`` above 1 is refused before anything runs (one process per server), 0 and 1 plan.
"""

from __future__ import annotations

import json

from tests.e2e.conftest import Project


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
