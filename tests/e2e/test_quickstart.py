"""The quickstart end to end through the CLI on the local runtime (real processes)."""

from __future__ import annotations

import json
import urllib.request

from tests.e2e.conftest import Project


def _endpoint(project: Project) -> str:
    outputs = json.loads(project.run("output", "--json").stdout)
    return str(outputs["modelserver.tuned-ngram"]["endpoint"])


def _complete(endpoint: str, prompt: str = "the model") -> str:
    body = json.dumps({"prompt": prompt, "max_tokens": 8, "seed": 3}).encode()
    req = urllib.request.Request(endpoint + "/v1/completions", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        return str(json.loads(resp.read())["choices"][0]["text"])


def test_plan_apply_request_replan_change_destroy(project: Project) -> None:
    assert "Success! The configuration is valid" in project.run("validate").stdout
    first = project.run("plan", "--detailed-exitcode", check=2)
    assert "Plan: 8 to add, 0 to change, 0 to destroy." in first.stdout

    applied = project.run("apply", "--auto-approve")
    assert "Apply complete! Resources: 8 added, 0 changed, 0 destroyed." in applied.stdout
    endpoint = _endpoint(project)
    assert _complete(endpoint).strip()

    again = project.run("plan", "--detailed-exitcode")
    assert "No changes." in again.stdout

    # One edit ripples: dataset replaced, trained model retrained, server rolled out.
    project.edit("substratus.yaml", "lowercase: true", "lowercase: false")
    ripple = project.run("plan", "--detailed-exitcode", "--out", "p.json", check=2)
    text = ripple.stdout
    assert "# dataset.tiny-corpus must be replaced" in text
    assert "loader.params.lowercase = true -> false  # forces replacement" in text
    assert "# model.tuned-ngram must be replaced" in text
    assert "because dataset.tiny-corpus changed (spec.loader.params.lowercase)" in text
    assert "# modelserver.tuned-ngram will be updated in-place" in text
    assert "model.base-ngram" not in text
    assert "Plan: 2 to add, 1 to change, 2 to destroy." in text
    shown = json.loads(project.run("show", "--json", "p.json").stdout)
    actions = {c["address"]: c["actions"] for c in shown["resource_changes"]}
    assert actions["dataset.tiny-corpus"] == ["delete", "create"]
    assert actions["modelserver.tuned-ngram"] == ["update"]
    assert actions["model.base-ngram"] == ["no-op"]

    project.run("apply", "p.json")
    new_endpoint = _endpoint(project)
    assert _complete(new_endpoint).strip()
    assert "No changes." in project.run("plan", "--detailed-exitcode").stdout
    # The previous dataset version is kept beside the new one; nothing older.
    versions = list((project.dir / ".substratus/artifacts/default/datasets/tiny-corpus").iterdir())
    assert len([v for v in versions if not v.name.startswith(".")]) == 2

    destroyed = project.run("destroy", "--auto-approve")
    assert "Destroy complete! Resources: 8 destroyed." in destroyed.stdout
    assert project.run("state", "list").stdout == ""
    try:
        urllib.request.urlopen(new_endpoint + "/", timeout=2)
        raise AssertionError("the server still answers after destroy")
    except OSError:
        pass
