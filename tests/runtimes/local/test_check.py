"""check(): what the local runtime cannot run is reported before planning, with address and path."""

from __future__ import annotations

from substratus.engine.diagnostic import Severity
from substratus.engine.runtime import ResourceView
from substratus.runtimes.local import LocalRuntime


def view(address: str, spec: dict[str, object]) -> ResourceView:
    return ResourceView(address, address.split(".")[0], spec)


def test_runnable_resources_have_no_diagnostics(runtime: LocalRuntime) -> None:
    local = {"local": {"path": "."}, "command": ["python", "x.py"], "env": {"A": "b"}}
    resources = [
        view("dataset.d", {"container": local, "loader": {"params": {}}}),
        view("model.base", {"url": "file:///models/base"}),
        view("modelserver.s", {"container": local, "model": {"name": "m"}, "replicas": 1}),
        view("notebook.n", {"container": {"git": {"url": "u"}, "env": {}}}),  # notebook.sh
    ]
    assert runtime.check(resources) == []


def test_image_only_container_missing_command_and_secrets_are_errors(
    runtime: LocalRuntime,
) -> None:
    env = {"HF_TOKEN": "${{ secrets.hf.token }}", "PLAIN": "x"}
    resources = [
        view("model.img", {"container": {"image": "substratusai/trainer", "env": {}}}),
        view("dataset.nocmd", {"container": {"local": {"path": "."}, "env": {}}}),
        view("modelserver.sec", {"container": {"local": {}, "command": ["s"], "env": env}}),
        view("model.remote", {"url": "gs://bucket/weights"}),
    ]
    diags = runtime.check(resources)
    assert [(d.severity, d.address, d.path) for d in diags] == [
        (Severity.ERROR, "model.img", "spec.container.image"),
        (Severity.ERROR, "dataset.nocmd", "spec.container.command"),
        (Severity.ERROR, "modelserver.sec", "spec.container.env.HF_TOKEN"),
        (Severity.ERROR, "model.remote", "spec.url"),
    ]
    image, command, secret, url = diags
    assert image.summary == "container image substratusai/trainer cannot run on the local runtime"
    assert image.detail == (
        "give a `local:` or `git:` source and a `command`, or use runtime: kubernetes"
    )
    assert "command" in command.detail
    assert "Kubernetes Secret hf.token" in secret.summary
    assert "cannot read" in secret.summary
    assert "file://" in url.detail


def test_replicas_above_one_is_an_error_zero_and_one_are_fine(runtime: LocalRuntime) -> None:
    container = {"local": {}, "command": ["s"], "env": {}}
    (diag,) = runtime.check([view("modelserver.s", {"container": container, "replicas": 3})])
    assert diag.severity is Severity.ERROR
    assert (diag.address, diag.path) == ("modelserver.s", "spec.replicas")
    assert diag.summary == "the local runtime cannot run 3 replicas of a model server"
    assert "one process per server" in diag.detail and "`replicas: 1`" in diag.detail
    assert "--runtime kubernetes" in diag.detail
    for replicas in (0, 1):
        assert (
            runtime.check([view("modelserver.s", {"container": container, "replicas": replicas})])
            == []
        )


def test_spot_is_accepted_and_noted(runtime: LocalRuntime) -> None:
    container = {"local": {}, "command": ["s"], "env": {}}
    trainer = {"dataset": {"name": "d"}, "resources": {"spot": True}}
    resources = [
        view("model.m", {"container": container, "trainer": trainer}),
        view("dataset.d", {"container": container, "resources": {"spot": False}}),
    ]
    (diag,) = runtime.check(resources)
    assert diag.severity is Severity.WARNING
    assert (diag.address, diag.path) == ("model.m", "spec.trainer.resources.spot")
    assert diag.summary == "spot has no effect on the local runtime"
