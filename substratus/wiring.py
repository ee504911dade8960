"""The engine-facing wiring: settings (flags > SUBSTRATUS_* env > ``kind: Project`` > defaults) →
a state backend and a runtime. Below ``substratus.cli`` and ``substratus.ci``, above the
runtimes and state backends; the engine never imports it.

``Overrides`` are the settings a command line gave (the ``settings`` of the CLI's one options
object, ``cli.options.RunOptions``); ``resolve`` completes them into ``Resolved``, which
``make_backend`` and ``make_runtime`` turn into the objects the engine works with.

``<config dir>`` is the configuration's root: the deepest directory containing every ``-f`` path
(``engine.config.config_root``), whatever their order.

With no settings at all everything is local: state in ``<config dir>/.substratus/state``,
artifacts in ``<config dir>/.substratus/artifacts``, runs and logs in ``<config dir>/.substratus``
(``.substratus/workspaces/<name>/`` for a workspace other than ``default``).

The workspace is ``--workspace``, else ``SUBSTRATUS_WORKSPACE``, else the one ``substratus
workspace select`` wrote to ``<config dir>/.substratus/workspace``, else ``default``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from substratus.engine.diagnostic import fail

if TYPE_CHECKING:  # annotations only: the CLI imports this module at start-up
    from substratus.engine.backend import Backend
    from substratus.engine.config import Config
    from substratus.engine.runtime import Runtime


@dataclass(frozen=True)
class Overrides:
    """The settings given on the command line (or by their ``SUBSTRATUS_*`` variables): None
    where not given, so that ``kind: Project`` or the default applies (``resolve``)."""

    state: str | None = None
    runtime: str | None = None
    artifacts: str | None = None
    namespace: str | None = None
    context: str | None = None
    workspace: str = "default"


@dataclass
class Resolved:
    state_url: str
    artifacts_url: str
    runtime: str
    workdir: Path
    namespace: str
    workspace: str
    base: Path  # the configuration directory (relative paths resolve against it)
    context: str | None = None  # Kubernetes context (None: the current one / in-cluster)
    cloud: str = "generic"  # gcp | kind | generic (kubernetes runtime)
    registry: str | None = None  # where in-cluster builds push images

    def as_plan_settings(self) -> dict[str, Any]:
        """What a saved plan fixes (``from_plan_settings`` reads it back)."""
        return {
            "state": self.state_url,
            "artifacts": self.artifacts_url,
            "runtime": self.runtime,
            "workdir": str(self.workdir),
            "namespace": self.namespace,
            "base": str(self.base),
            "context": self.context,
            "cloud": self.cloud,
            "registry": self.registry,
        }

    @classmethod
    def from_plan_settings(cls, st: dict[str, Any], workspace: str) -> Resolved:
        def opt(key: str) -> str | None:
            return str(st[key]) if st.get(key) is not None else None

        return cls(
            state_url=str(st["state"]),
            artifacts_url=str(st["artifacts"]),
            runtime=str(st["runtime"]),
            workdir=Path(str(st["workdir"])),
            namespace=str(st.get("namespace") or "default"),
            workspace=workspace,
            base=Path(str(st.get("base") or Path(str(st["workdir"])).parent)),
            context=opt("context"),
            cloud=str(st.get("cloud") or "generic"),
            registry=opt("registry"),
        )


def config_dir(paths: list[str]) -> Path:
    """The configuration's root (``engine.config.config_root``): where ``.substratus/`` is."""
    from substratus.engine.config import config_root

    return config_root(paths)


def workspace_file(base: Path) -> Path:
    """Where ``workspace select`` records the workspace chosen for a configuration directory."""
    return base / ".substratus" / "workspace"


def selected_workspace(base: Path) -> str | None:
    """The workspace ``workspace select`` chose for ``base`` (``None``: none chosen)."""
    path = workspace_file(base)
    try:
        name = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise fail(f"cannot read the selected workspace from {path}", f"{exc}.") from exc
    from substratus.state.workspace import is_workspace_name

    if name and not is_workspace_name(name):
        raise fail(
            f"{path} names the invalid workspace {name!r}",
            "Choose the workspace again: substratus workspace select NAME",
        )
    return name or None


def with_notebooks(paths: list[str]) -> list[str]:
    """``paths`` and the notebook documents ``substratus notebook -d/--from`` wrote beside the
    configuration (``.substratus/notebooks/*.yaml``): such a notebook stays a resource of the
    configuration until its file is deleted."""
    given = {Path(p).resolve() for p in paths}
    folder = config_dir(paths) / ".substratus" / "notebooks"
    extra = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    return [*paths, *(str(p) for p in extra if p.resolve() not in given)]


def current_workspace(base: Path) -> str:
    """The workspace commands use when ``--workspace`` is not given."""
    return (
        os.environ.get("SUBSTRATUS_WORKSPACE", "").strip() or selected_workspace(base) or "default"
    )


def _file_url(value: str, base: Path) -> str:
    if "://" in value:
        if value.startswith("file://"):
            p = Path(value.removeprefix("file://"))
            return "file://" + str((base / p).resolve() if not p.is_absolute() else p)
        return value
    p = Path(value)
    return "file://" + str((base / p).resolve() if not p.is_absolute() else p)


def resolve(config: Config | None, paths: list[str], given: Overrides) -> Resolved:
    """The settings ``given``, completed from ``config``'s ``kind: Project`` and the defaults
    (``config`` None: a configuration that could not be loaded, defaults only)."""
    state, runtime, artifacts = given.state, given.runtime, given.artifacts
    workspace, namespace, context = given.workspace, given.namespace, given.context
    base = config_dir(paths)
    project = config.settings.project if config else None
    workdir = base / ".substratus"
    state_url = state or (project.state if project else None) or str(workdir / "state")
    if workspace != "default":  # workspaces never share runs, builds or artifact versions
        workdir = workdir / "workspaces" / workspace
    rt = runtime or (project.runtime if project else None) or "local"
    chosen = artifacts or (project.artifacts if project else None)
    # on a cluster there is no sensible default store: check() asks for one
    art = chosen or ("" if rt == "kubernetes" else str(workdir / "artifacts"))
    if chosen and workspace != "default":  # a shared store: keep each workspace's versions apart
        art = chosen.rstrip("/") + f"/workspaces/{workspace}"
    ns = namespace or (config.default_namespace if config else None) or "default"
    return Resolved(
        state_url=_file_url(state_url, base),
        artifacts_url=_file_url(art, base) if art else "",
        runtime=rt,
        workdir=workdir,
        namespace=ns,
        workspace=workspace,
        base=base,
        context=context or (project.kubernetes.context if project else None),
        cloud=(project.cloud if project else None) or "generic",
        registry=project.registry if project else None,
    )


def make_backend(r: Resolved) -> Backend:
    from substratus.state import open_backend

    return open_backend(r.state_url, r.workspace, r.base)


# The artifact store URLs each runtime can use (scheme before ``://``).
ARTIFACT_SCHEMES = {"local": ("file", "gs"), "kubernetes": ("gs", "file", "pvc")}


def check_artifacts_url(r: Resolved) -> None:
    """Refuse an artifact store URL the runtime cannot use (``--artifacts ftp://…``), naming it
    and the schemes that work; an empty URL is left to the runtime's own check."""
    schemes = ARTIFACT_SCHEMES.get(r.runtime)
    if not r.artifacts_url or schemes is None:
        return
    scheme, sep, rest = r.artifacts_url.partition("://")
    if sep and scheme.lower() in schemes and rest.strip("/"):
        return
    examples = {"file": "file:///absolute/dir", "gs": "gs://bucket/prefix", "pvc": "pvc://claim"}
    raise fail(
        f"Unsupported artifact store {r.artifacts_url!r}",
        f"The {r.runtime} runtime keeps artifacts in "
        + " or ".join(examples[s] for s in schemes)
        + ". Set --artifacts (SUBSTRATUS_ARTIFACTS) or the Project's `artifacts:` to one.",
    )


def check_kubeconfig(kubeconfig: str | None = None) -> None:
    """Refuse a kubeconfig file that is not a YAML mapping, naming the file (the Kubernetes
    client would fail with a bare parser error deep inside the first request). The files are
    those kubectl reads: ``kubeconfig``, else ``KUBECONFIG`` (``:``-separated), else
    ``~/.kube/config``; missing ones are left to the runtime (in-cluster configuration)."""
    import yaml

    files = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    for name in files.split(os.pathsep):
        path = Path(name).expanduser() if name else None
        if path is None or not path.is_file():
            continue
        why = ""
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            if doc is not None and not isinstance(doc, dict):
                why = f"it holds a YAML {type(doc).__name__}, not a kubeconfig mapping"
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            why = f"{at}{exc.problem or exc.context or 'not valid YAML'}"
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            why = " ".join(str(exc).split())
        if why:
            raise fail(
                f"Cannot read the Kubernetes configuration {path}",
                f"{why[:1].upper()}{why[1:]}. Fix the file (`kubectl config view` shows what "
                "kubectl makes of it), or point KUBECONFIG at a valid one.",
            )


def make_runtime(r: Resolved) -> Runtime:
    check_artifacts_url(r)
    if r.runtime == "local":
        from substratus.runtimes.local import LocalRuntime

        return LocalRuntime(workdir=r.workdir, artifacts_url=r.artifacts_url)
    if r.runtime == "kubernetes":
        from substratus.runtimes.kubernetes import KubernetesRuntime

        check_kubeconfig()
        return KubernetesRuntime(
            artifacts_url=r.artifacts_url,
            cloud=r.cloud,
            registry=r.registry,
            context=r.context,
            workdir=r.workdir,
        )
    raise fail(f"Unknown runtime {r.runtime!r}", "Use --runtime local or --runtime kubernetes.")
