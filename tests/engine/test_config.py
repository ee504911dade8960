"""Configuration loading: both document shapes, strict validation, diagnostics with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from substratus.engine.address import Address
from substratus.engine.config import load_config
from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.graph import build_graph


def _errors(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(DiagnosticError) as info:
        cfg = load_config([str(tmp_path)])
        build_graph(cfg.resources)
    return [(d.location(), d.summary + " " + d.detail) for d in info.value.diagnostics]


def test_design_shape_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "kind: Model\nname: m\nspec:\n  container: {image: x}\n  loader: {params: {a: 1}}\n"
        "---\nkind: Server\nname: s\nnamespace: team-b\nspec:\n  container: {image: y}\n"
        "  model: {name: m, namespace: default}\n  resources: {gpuCount: 2, type: L4}\n"
    )
    cfg = load_config([str(tmp_path)])
    server = cfg.resources[Address("modelserver", "s", "team-b")]
    assert server.spec["quantization"] == {"bits": 16} and server.spec["replicas"] == 1
    assert server.spec["resources"]["gpu"] == {"type": "nvidia-l4", "count": 2}
    assert [str(d.address) for d in server.dependencies] == ["model.m"]
    assert str(server.address) == "team-b/modelserver.s"


def test_operator_manifest_is_translated(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Model\nmetadata: {name: ft}\nspec:\n"
        "  image: substratusai/model-trainer-huggingface\n  model: {name: base}\n"
        "  dataset: {name: data}\n  params: {epochs: 1}\n"
        "  resources: {gpu: {type: nvidia-l4, count: 4}}\n---\n"
        "apiVersion: substratus.ai/v1\nkind: Model\nmetadata: {name: base}\nspec:\n"
        "  image: loader\n  params: {name: opt}\n---\n"
        "apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {name: data}\nspec:\n"
        "  build: {git: {url: 'https://github.com/x/images', path: loader, tag: v1}}\n"
        "  params: {urls: u}\n"
    )
    cfg = load_config([str(tmp_path)])
    ft = cfg.resources[Address("model", "ft")]
    assert ft.spec["trainer"]["baseModel"] == {"name": "base"}
    assert ft.spec["trainer"]["params"] == {"epochs": 1}
    data = cfg.resources[Address("dataset", "data")]
    assert data.spec["container"]["git"]["ref"] == "v1"
    builds = [a for a in cfg.resources if a.kind == "build"]
    assert [str(b) for b in builds] == ["build.images-loader-f0fd73"]


def test_every_error_is_reported_at_once_with_lines(tmp_path: Path) -> None:
    errors = _errors(
        tmp_path,
        "kind: Model\nname: a\nspec:\n  container: {image: x}\n"  # 1-4
        "  trainer: {dataset: nope, params: {}, epoch: 1}\n"  # 5 unknown field
        "---\nkind: Gizmo\nname: g\n"  # 7 unknown kind
        "---\nkind: Dataset\nname: Bad_Name\nspec: {container: {image: x}}\n"  # 11 bad name
        "---\nkind: Model\nname: b\nspec:\n  container: {image: x}\n"
        "  resources: {cpu: lots}\n  loader: {}\n",  # 18 wrong type
    )
    text = "\n".join(f"{loc} {msg}" for loc, msg in errors)
    assert "c.yaml:5, model.a, spec.trainer.epoch Unknown field 'epoch'" in text
    assert "c.yaml:7, kind Unknown kind 'Gizmo'" in text
    assert "c.yaml:11, name Invalid name" in text
    assert "c.yaml:18, model.b, spec.resources.cpu Invalid value" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: Dataset\na: [1\n", "c.yaml:3 Malformed YAML"),
        ("kind: Model\nname: a\nname: b\n", "c.yaml:3, name Duplicate key 'name'"),
        (
            "kind: Model\nname: a\nspec: {url: 'file:///x'}\n---\n"
            "kind: Model\nname: a\nspec: {url: 'file:///y'}\n",
            "c.yaml:5, model.a Duplicate resource model.a",
        ),
        (
            "kind: Model\nname: a\nspec:\n  container: {image: x}\n"
            "  trainer: {baseModel: a, dataset: d}\n"
            "---\nkind: Dataset\nname: d\nspec: {container: {image: x}}\n",
            "c.yaml:5, model.a, spec.trainer.baseModel Resource references itself",
        ),
        (
            "kind: Model\nname: a\nspec:\n  container: {image: x}\n"
            "  trainer: {baseModel: b, dataset: d}\n---\n"
            "kind: Model\nname: b\nspec:\n  container: {image: x}\n"
            "  trainer: {baseModel: a, dataset: d}\n---\n"
            "kind: Dataset\nname: d\nspec: {container: {image: x}}\n",
            "model.a → model.b → model.a",
        ),
        (
            "kind: Dataset\nname: d\nspec: {container: {image: x, git: {url: u}}}\n",
            "exactly one source",
        ),
        ("kind: Model\nname: m\nspec: {}\n", "a loader, a trainer, or a url"),
        (
            "kind: ModelServer\nname: s\nspec:\n  container: {image: x}\n  model: m\n"
            "  quantization: {bits: 3}\n",
            "c.yaml:6, modelserver.s, spec.quantization.bits Invalid value",
        ),
        (
            "kind: Dataset\nname: d\nspec:\n  container: {local: {path: ./missing}}\n",
            "c.yaml:4, dataset.d, spec.container.local.path Build context not found",
        ),
        (
            "apiVersion: v2\nkind: Model\nmetadata: {name: m}\nspec: {url: 'file:///x'}\n",
            "c.yaml:1, apiVersion Unsupported apiVersion",
        ),
        (
            "kind: ModelServer\nname: s\nspec:\n  container: {image: x}\n  model: m\n"
            "  retries: 2\n",
            "c.yaml:6, modelserver.s, spec.retries Unknown field 'retries' Allowed fields here: "
            "container, model, params, quantization, replicas, resources. retries is for "
            "Datasets and Models",
        ),
        (
            "kind: Notebook\nname: n\nspec:\n  container: {image: x}\n  retries: 1\n",
            "c.yaml:5, notebook.n, spec.retries Unknown field 'retries'",
        ),
        (
            "kind: Model\nname: m\nspec:\n  url: file:///x\n  retries: 1\n",
            "c.yaml:5, model.m, spec.retries Invalid value for spec.retries retries restarts a "
            "failed loader or trainer run; a Model that only names a url runs nothing",
        ),
        (
            "kind: Dataset\nname: d\nspec:\n  container: {image: x}\n  retries: -1\n",
            "c.yaml:5, dataset.d, spec.retries Invalid value",
        ),
        (
            "kind: Dataset\nname: d\nspec:\n  container: {image: x}\n  retries: 101\n",
            "less than or equal to 100",
        ),
        (
            "kind: Dataset\nname: d\nspec:\n  container: {image: x}\n  resources: {spot: maybe}\n",
            "c.yaml:5, dataset.d, spec.resources.spot Invalid value",
        ),
    ],
)
def test_diagnostics(tmp_path: Path, text: str, expected: str) -> None:
    found = "\n".join(f"{loc} {msg}" for loc, msg in _errors(tmp_path, text))
    assert expected in found


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DiagnosticError, match="not found"):
        load_config([str(tmp_path / "nope")])
    with pytest.raises(DiagnosticError, match="No configuration files"):
        load_config([str(tmp_path)])


def test_an_empty_directory_is_only_the_root_of_a_file_inside_it(tmp_path: Path) -> None:
    # the notebooks `substratus notebook -d` wrote where there is no configuration of its own
    notebooks = tmp_path / ".substratus" / "notebooks"
    notebooks.mkdir(parents=True)
    (notebooks / "code.yaml").write_text(
        "kind: Notebook\nname: code\nspec: {container: {local: {path: ..}}}\n"
    )
    cfg = load_config([str(tmp_path), str(notebooks / "code.yaml")])
    assert [str(a) for a in cfg.resources if a.kind == "notebook"] == ["notebook.code"]
    beside = tmp_path / "beside"  # a file elsewhere does not excuse an empty directory
    beside.mkdir()
    (beside / "c.yaml").write_text("kind: Model\nname: m\nspec: {url: 'file:///x'}\n")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DiagnosticError, match="No configuration files"):
        load_config([str(tmp_path / "empty"), str(beside / "c.yaml")])


COMPOSE = "services:\n  web:\n    image: nginx\n"
WORKFLOW = "on: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n"


def test_yaml_beside_the_configuration_that_is_not_substratus_is_skipped_and_named(
    tmp_path: Path,
) -> None:
    (tmp_path / "docker-compose.yaml").write_text(COMPOSE)
    (tmp_path / "ci.yml").write_text(WORKFLOW)
    (tmp_path / "flow.yaml").write_text("{kind: Model, name: m, spec: {url: 'file:///x'}}\n")
    cfg = load_config([str(tmp_path)])
    assert [str(a) for a in cfg.resources] == ["model.m"]  # flow style has a kind: read
    assert [f.rsplit("/", 1)[-1] for f in cfg.files] == ["flow.yaml"]
    said = sorted(d.summary.rsplit("/", 1)[-1] for d in cfg.warnings)
    assert said == [
        "ci.yml is not a substratus configuration: skipped",
        "docker-compose.yaml is not a substratus configuration: skipped",
    ]
    # the same file named by itself is read, and its mistakes are errors as ever
    with pytest.raises(DiagnosticError, match="Unknown field 'services'"):
        load_config([str(tmp_path / "docker-compose.yaml")])


def test_a_directory_of_only_foreign_yaml_has_no_configuration(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yaml").write_text(COMPOSE)
    with pytest.raises(DiagnosticError, match=r"No configuration files") as caught:
        load_config([str(tmp_path)])
    assert "1 skipped: no kind" in str(caught.value.diagnostics[-1].detail)


def test_an_empty_file_is_an_empty_configuration_not_a_foreign_one(tmp_path: Path) -> None:
    (tmp_path / "substratus.yaml").write_text("# nothing yet\n---\n")
    cfg = load_config([str(tmp_path)])
    assert cfg.resources == {} and cfg.warnings == []


def test_a_wrong_kind_is_still_an_error_not_a_skip(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("kind: Dataste\nname: d\nspec: {}\n")
    with pytest.raises(DiagnosticError, match="kind"):
        load_config([str(tmp_path)])


def test_identical_sources_share_one_build(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "c.yaml").write_text(
        "kind: Dataset\nname: a\nspec: {container: {local: {path: app}, command: [x]}}\n---\n"
        "kind: Dataset\nname: b\nspec: {container: {local: {path: ./app/}, command: [x]}}\n"
    )
    cfg = load_config([str(tmp_path)])
    builds = [a for a in cfg.resources if a.kind == "build"]
    assert [str(b) for b in builds] == ["build.app"]
    assert all(
        r.dependencies[0].address == builds[0]
        for r in cfg.resources.values()
        if r.kind == "dataset"
    )
