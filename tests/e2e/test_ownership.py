"""Applies touch only what is ours, and notice what others changed (issue #11, items 1 and 6),
through the CLI with jobs that count their runs (``tests.e2e.counting``):

- two configurations sharing one artifact store (file:// and gs://) never remove each other's
  versions — not by garbage collection, not by destroy — and a version one of them uses from
  the other (an external dependency) is kept while it does;
- a file edited, added or deleted inside a completed version is noticed by the next plan
  ("artifacts changed outside substratus") and repaired by running the job again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Project, kill_leftovers
from tests.e2e.counting import PIPELINE, make_pipeline, only_model, runs, state
from tests.support.gcs import GcsServer


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "runs.log"
    monkeypatch.setenv("RUNS_LOG", str(path))
    yield path
    kill_leftovers(tmp_path)


def _project(root: Path, config: str = PIPELINE) -> Project:
    return Project(make_pipeline(root, config))


def _versions(p: Project, address: str) -> set[str]:
    """Every version the state records for a resource (current, previous, not yet collected)."""
    rec = state(p.dir)["resources"][address]
    return set(rec["versions"])


def _dirs(store: Path, kind: str, name: str) -> set[str]:
    base = store / "default" / f"{kind}s" / name
    return {p.name for p in base.iterdir() if p.is_dir()} if base.is_dir() else set()


def _edit_params(p: Project, value: int) -> None:
    text = (p.dir / "substratus.yaml").read_text()
    head, _, tail = text.partition("params: {name: data")
    rest = tail.split("}", 1)[1]
    (p.dir / "substratus.yaml").write_text(f"{head}params: {{name: data, v: {value}}}{rest}")


def test_two_configurations_sharing_a_file_store_never_remove_each_others_versions(
    tmp_path: Path, log: Path
) -> None:
    store = tmp_path / "shared"
    art = ["--artifacts", store.as_uri()]
    a, b = _project(tmp_path / "a"), _project(tmp_path / "b")
    a.run("apply", "--auto-approve", *art)
    b.run("apply", "--auto-approve", *art)
    assert runs(log) == {"data": 2, "trained": 2}  # b ran its own jobs: nothing was adopted
    mine = _versions(a, "dataset.data")
    assert mine.isdisjoint(_versions(b, "dataset.data"))

    for v in range(1, 4):  # b replaces its dataset three times: its garbage is collected
        _edit_params(b, v)
        b.run("apply", "--auto-approve", *art)
    assert runs(log) == {"data": 5, "trained": 5}
    assert mine <= _dirs(store, "dataset", "data")  # a's version is still there
    assert len(_versions(b, "dataset.data")) == 2  # b kept its current and previous only
    assert "No changes." in a.run("plan", "--detailed-exitcode", *art).stdout

    b.run("destroy", "--auto-approve", *art)
    assert _dirs(store, "dataset", "data") == mine
    assert "No changes." in a.run("plan", "--detailed-exitcode", *art).stdout
    a.run("destroy", "--auto-approve", *art)
    assert _dirs(store, "dataset", "data") == set()
    assert runs(log) == {"data": 5, "trained": 5}


def test_a_version_another_configuration_uses_is_kept_until_it_lets_go(
    tmp_path: Path, log: Path
) -> None:
    store = tmp_path / "shared"
    art = ["--artifacts", store.as_uri()]
    a = _project(tmp_path / "a")
    c = _project(tmp_path / "c", only_model("c-trained"))
    a.run("apply", "--auto-approve", *art)
    plan = c.run("plan", *art)
    assert "<= read" in plan.stdout or "will be read" in plan.stdout
    c.run("apply", "--auto-approve", *art)  # c trains on a's dataset version
    used = state(c.dir)["resources"]["model.trained"]["dependency_digests"]["dataset.data"]
    assert used in _versions(a, "dataset.data")

    for v in range(1, 4):  # a moves on: without c's hold, its old version would be collected
        _edit_params(a, v)
        a.run("apply", "--auto-approve", *art)
    rec = state(a.dir)["resources"]["dataset.data"]
    assert used not in (rec["version"], rec["previous_version"])  # a no longer needs it …
    assert used in rec["versions"]  # (it stays a's to collect)
    assert used in _dirs(store, "dataset", "data")  # … but c does
    assert "No changes." in a.run("plan", "--detailed-exitcode", *art).stdout

    c.run("destroy", "--auto-approve", *art)  # c lets go: a's next apply collects it
    _edit_params(a, 9)
    a.run("apply", "--auto-approve", *art)
    assert used not in _dirs(store, "dataset", "data")
    assert used not in _versions(a, "dataset.data")
    a.run("destroy", "--auto-approve", *art)


def test_files_changed_inside_a_version_are_noticed_and_repaired(tmp_path: Path, log: Path) -> None:
    p = _project(tmp_path / "p")
    p.run("apply", "--auto-approve")
    assert "No changes." in p.run("plan", "--detailed-exitcode").stdout
    for n, damage in enumerate(("modified", "deleted", "added"), start=2):
        version = Path(state(p.dir)["resources"]["dataset.data"]["outputs"]["artifacts_path"])
        os.chmod(version, 0o755)
        target = version / ("extra.bin" if damage == "added" else "out.txt")
        if damage == "modified":
            os.chmod(target, 0o644)
            target.write_text(target.read_text().replace("data", "dat4"))  # same size
        elif damage == "deleted":
            target.unlink()
        else:
            target.write_bytes(b"\0")
        plan = p.run("plan", "--detailed-exitcode", check=2)
        name = "extra.bin" if damage == "added" else "out.txt"
        changed = f"# dataset.data has changed: artifacts changed outside substratus at {version}"
        assert changed in plan.stdout, plan.stdout
        assert f"{name} {damage}" in plan.stdout
        assert "# dataset.data must be replaced" in plan.stdout
        p.run("apply", "--auto-approve")
        assert runs(log) == {"data": n, "trained": 1}
        assert "No changes." in p.run("plan", "--detailed-exitcode").stdout
    p.run("destroy", "--auto-approve")


def _gs_env(gcs: GcsServer) -> dict[str, str]:
    return dict(gcs.env)


def _blob_versions(gcs: GcsServer, bucket: str, prefix: str) -> set[str]:
    names = {b.name for b in gcs.client().list_blobs(bucket, prefix=prefix)}
    return {n.removeprefix(prefix).split("/", 1)[0] for n in names if "/" in n.removeprefix(prefix)}


def test_gs_store_two_states_and_a_changed_object(
    tmp_path: Path, log: Path, gcs_server: GcsServer, gcs_bucket: str
) -> None:
    env = _gs_env(gcs_server)
    art = ["--artifacts", f"gs://{gcs_bucket}/shared"]
    a, b = _project(tmp_path / "a"), _project(tmp_path / "b")
    a.run("apply", "--auto-approve", *art, env=env)
    b.run("apply", "--auto-approve", *art, env=env)
    assert runs(log) == {"data": 2, "trained": 2}
    prefix = "shared/default/datasets/data/"
    mine = _versions(a, "dataset.data")
    for v in range(1, 4):
        _edit_params(b, v)
        b.run("apply", "--auto-approve", *art, env=env)
    b.run("destroy", "--auto-approve", *art, env=env)
    assert _blob_versions(gcs_server, gcs_bucket, prefix) == mine
    assert "No changes." in a.run("plan", "--detailed-exitcode", *art, env=env).stdout

    url: Any = state(a.dir)["resources"]["dataset.data"]["outputs"]["artifacts"]
    key = url.removeprefix(f"gs://{gcs_bucket}/") + "/out.txt"
    gcs_server.client().bucket(gcs_bucket).blob(key).upload_from_string(b"tampered")
    plan = a.run("plan", "--detailed-exitcode", *art, env=env, check=2)
    assert "artifacts changed outside substratus" in plan.stdout
    assert "out.txt modified" in plan.stdout
    a.run("apply", "--auto-approve", *art, env=env)
    assert runs(log) == {"data": 6, "trained": 5}
    assert "No changes." in a.run("plan", "--detailed-exitcode", *art, env=env).stdout
    a.run("destroy", "--auto-approve", *art, env=env)
