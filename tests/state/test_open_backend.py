"""open_backend: URL schemes, path resolution and workspace names."""

from __future__ import annotations

from pathlib import Path

import pytest

from substratus.engine.diagnostic import DiagnosticError
from substratus.state import open_backend
from substratus.state.local import FileBackend


def text_of(exc: DiagnosticError) -> str:
    return " ".join(f"{d.summary} {d.detail}" for d in exc.diagnostics)


@pytest.mark.parametrize(
    ("url", "relative"),
    [
        (".substratus/state", ".substratus/state"),
        ("file://.substratus/state", ".substratus/state"),
        ("file://out/my%20state", "out/my state"),
        ("  shared/state  ", "shared/state"),
    ],
)
def test_relative_paths_are_relative_to_base_dir(tmp_path: Path, url: str, relative: str) -> None:
    backend = open_backend(url, "default", tmp_path)
    assert isinstance(backend, FileBackend)
    assert backend.directory == tmp_path / relative
    assert backend.state_path == tmp_path / relative / "default.json"
    assert backend.lock_path == tmp_path / relative / "default.lock"


@pytest.mark.parametrize("form", ["{p}", "file://{p}", "file://localhost{p}", "FILE://{p}"])
def test_absolute_paths(tmp_path: Path, form: str) -> None:
    target = tmp_path / "abs"
    backend = open_backend(form.format(p=target), "staging", Path("/elsewhere"))
    assert isinstance(backend, FileBackend)
    assert backend.directory == target
    assert backend.workspace == "staging"
    assert backend.state_path.name == "staging.json"


def test_url_round_trips(tmp_path: Path) -> None:
    backend = open_backend(str(tmp_path / "a dir"), "default", tmp_path)
    again = open_backend(backend.url, "default", Path("/"))
    assert isinstance(again, FileBackend) and again.directory == tmp_path / "a dir"
    assert again.url == backend.url


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    backend = open_backend("~/state", "default", Path("/"))
    assert isinstance(backend, FileBackend) and backend.directory == tmp_path / "state"


@pytest.mark.parametrize("url", ["s3://bucket/key", "https://example.com/state", "", "   "])
def test_unsupported_urls_list_the_schemes(tmp_path: Path, url: str) -> None:
    with pytest.raises(DiagnosticError) as info:
        open_backend(url, "default", tmp_path)
    text = text_of(info.value)
    assert "file://DIR" in text and "gs://bucket/prefix" in text


def test_file_url_without_a_path(tmp_path: Path) -> None:
    with pytest.raises(DiagnosticError, match="names no directory"):
        open_backend("file://", "default", tmp_path)


@pytest.mark.parametrize("name", ["default", "staging", "team-b", "v1.2_x", "A9"])
def test_valid_workspaces(tmp_path: Path, name: str) -> None:
    assert open_backend("state", name, tmp_path).workspace == name


@pytest.mark.parametrize(
    "name", ["", ".hidden", "-x", "_x", "a/b", "../up", "a b", "x\n", "é", "a\\b"]
)
def test_invalid_workspaces(tmp_path: Path, name: str) -> None:
    with pytest.raises(DiagnosticError, match="invalid workspace name"):
        open_backend("state", name, tmp_path)
    with pytest.raises(DiagnosticError, match="invalid workspace name"):
        FileBackend(tmp_path, name)
