"""Settings resolution: defaults beside the configuration, and workspaces kept apart."""

from __future__ import annotations

from pathlib import Path

from substratus.wiring import Overrides, resolve


def _resolve(tmp_path: Path, **kw: str | None) -> tuple[str, str, Path]:
    given = Overrides(
        state=kw.get("state"),
        artifacts=kw.get("artifacts"),
        workspace=kw.get("workspace") or "default",
    )
    r = resolve(None, [str(tmp_path)], given)
    return r.state_url, r.artifacts_url, r.workdir


def test_defaults_live_beside_the_configuration(tmp_path: Path) -> None:
    state, artifacts, workdir = _resolve(tmp_path)
    assert state == f"file://{tmp_path}/.substratus/state"
    assert artifacts == f"file://{tmp_path}/.substratus/artifacts"
    assert workdir == tmp_path / ".substratus"


def test_workspaces_never_share_runs_or_artifact_versions(tmp_path: Path) -> None:
    _, artifacts, workdir = _resolve(tmp_path, workspace="staging")
    assert workdir == tmp_path / ".substratus" / "workspaces" / "staging"
    assert artifacts == f"file://{workdir}/artifacts"
    _, shared, _ = _resolve(tmp_path, workspace="staging", artifacts="gs://bucket/ml")
    assert shared == "gs://bucket/ml/workspaces/staging"
    _, default, _ = _resolve(tmp_path, artifacts="gs://bucket/ml")
    assert default == "gs://bucket/ml"
