"""The CLI against the GCS backend (real processes): state pull/push with lineage and serial
checks, force-unlock, the takeover warning, and workspace list/select/delete (GCS and local)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from substratus.engine.backend import LockInfo
from substratus.engine.statefile import StateFile
from tests.state.gcs.conftest import MakeBackend
from tests.state.gcs.helpers import add, cli, objects, outlive_lock, state_of
from tests.support.gcs import GcsServer


def run(server: GcsServer, cwd: Path, *args: str, code: int = 0) -> str:
    result = cli(server, cwd, *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout + result.stderr


def test_pull_and_push_check_lineage_and_serial(
    emulator: GcsServer, state_url: str, make_backend: MakeBackend, tmp_path: Path
) -> None:
    backend = make_backend()
    state = state_of("a")
    token = backend.write(state, None, [])
    backend.write(state, token, add(state, "b"))
    pulled = run(emulator, tmp_path, "state", "pull", "--state", state_url)
    assert StateFile.from_json(pulled) == state
    older = tmp_path / "older.json"
    older.write_text(state.model_copy(update={"serial": 1}).to_json())
    out = run(emulator, tmp_path, "state", "push", str(older), "--state", state_url, code=1)
    assert "older serial" in out
    other = tmp_path / "other.json"
    other.write_text(StateFile(serial=9).to_json())
    out = run(emulator, tmp_path, "state", "push", str(other), "--state", state_url, code=1)
    assert "different lineage" in out
    newer = state.model_copy(deep=True)
    add(newer, "c")
    (tmp_path / "newer.json").write_text(newer.to_json())
    out = run(emulator, tmp_path, "state", "push", "newer.json", "--state", state_url)
    assert "serial 3, 3 resources" in out
    assert make_backend().read()[0] == newer
    out = run(emulator, tmp_path, "state", "push", str(other), "--force", "--state", state_url)
    got, _ = make_backend().read()
    assert got is not None and got.lineage == StateFile.from_json(other.read_text()).lineage
    assert make_backend().current_lock() is None


def test_force_unlock_and_takeover(
    emulator: GcsServer, state_url: str, make_backend: MakeBackend, tmp_path: Path
) -> None:
    lock_id = make_backend().lock(LockInfo(operation="apply"))
    out = run(emulator, tmp_path, "state", "rm", "model.a", "--state", state_url, code=1)
    assert f"substratus force-unlock {lock_id}" in out
    out = run(emulator, tmp_path, "force-unlock", lock_id, "--force", "--state", state_url)
    assert f"ID:        {lock_id}" in out and "Operation: apply" in out
    make_backend().write(state_of("a", "b"), None, [])
    crashed = make_backend(lease_seconds=0.3)
    crashed.lock(LockInfo(operation="destroy"))
    outlive_lock(crashed)  # its holder "crashed": the lease runs out
    out = run(emulator, tmp_path, "state", "rm", "model.a", "--state", state_url)
    assert "took over the expired lock of" in out and "destroy since" in out
    assert "Removed model.a" in out
    assert sorted(make_backend().read()[0].resources) == ["model.b"]  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["gcs", "local"])
def test_workspaces(emulator: GcsServer, state_url: str, tmp_path: Path, kind: str) -> None:
    url = state_url if kind == "gcs" else f"file://{tmp_path / 'state'}"
    project = tmp_path / "project"
    project.mkdir()
    (project / "state.json").write_text(state_of("a").to_json())
    (project / "empty.json").write_text(StateFile().to_json())
    for name, source in (("staging", "state.json"), ("scratch", "empty.json")):
        run(emulator, project, "state", "push", source, "--state", url, "--workspace", name)
    assert run(emulator, project, "workspace", "list", "--state", url).split("\n")[:3] == [
        "* default",
        "  scratch",
        "  staging",
    ]
    out = run(emulator, project, "workspace", "select", "staging", "--state", url)
    assert 'Switched to workspace "staging"' in out
    assert (project / ".substratus" / "workspace").read_text().strip() == "staging"
    listing = run(emulator, project, "workspace", "list", "--state", url)
    assert "* staging" in listing and "  default" in listing
    assert json.loads(run(emulator, project, "output", "--json", "--state", url)) == {
        "model.a": {}
    }  # the selected workspace is the default of every command
    out = run(emulator, project, "workspace", "delete", "staging", "--state", url, code=1)
    assert "current workspace" in out
    out = run(emulator, project, "workspace", "delete", "default", "--state", url, code=1)
    assert "default workspace" in out
    run(emulator, project, "workspace", "select", "default", "--state", url)
    out = run(emulator, project, "workspace", "delete", "staging", "--state", url, code=1)
    assert "is not empty" in out and "1 resource(s)" in out
    run(emulator, project, "workspace", "delete", "scratch", "--state", url)
    run(emulator, project, "workspace", "delete", "staging", "--force", "--state", url)
    assert run(emulator, project, "workspace", "list", "--state", url).split() == ["*", "default"]
    out = run(emulator, project, "workspace", "delete", "staging", "--state", url, code=1)
    assert "does not exist" in out
    if kind == "gcs":
        from substratus.state.gcs import GcsBackend

        assert objects(emulator, GcsBackend(url)) == {}
    else:
        assert sorted(p.name for p in (tmp_path / "state").iterdir()) == []
