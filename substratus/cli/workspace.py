"""The ``workspace list|select|delete`` commands: independent states (and locks) in one backend.

``select`` records the choice in ``<config dir>/.substratus/workspace`` (read by every command
when neither ``--workspace`` nor ``SUBSTRATUS_WORKSPACE`` is given); ``delete`` refuses
``default`` and the selected workspace, takes the workspace's lock, refuses a state that still
records resources unless ``--force``, and removes the state with compare-and-swap
(``delete_workspace``, under the lock), then its local directory
``<config dir>/.substratus/workspaces/NAME/`` (artifacts, runs, builds), so nothing is left
behind — kept only when ``--force`` forgot resources that may still use it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Protocol, runtime_checkable

import typer

from substratus.cli.options import Files, Lock, LockTimeout, RunOptions, StateUrl, Workspace
from substratus.engine.diagnostic import fail
from substratus.wiring import config_dir, current_workspace, workspace_file

if TYPE_CHECKING:  # the state backends are imported by the commands, not at start-up
    from substratus.engine.backend import Backend


@runtime_checkable
class _DeletesWorkspace(Protocol):
    def delete_workspace(self, expected_token: str | None) -> None: ...


def workspace_list(
    ctx: typer.Context,
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
) -> None:
    """List the workspaces of the state backend; * marks the current one.

    Example: substratus workspace list
    """
    from substratus.cli.prepare import state_backend

    names = state_backend(RunOptions.from_params(ctx.params)).workspaces()
    for name in sorted({*names, workspace}):
        note = "" if name in names else "  (no state yet)"
        print(f"{'*' if name == workspace else ' '} {name}{note}")


def workspace_select(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The workspace to use from now on.")],
    files: Files = None,
    state: StateUrl = None,
) -> None:
    """Use NAME when --workspace is not given (recorded for this configuration directory).

    Example: substratus workspace select staging
    """
    from substratus.cli.prepare import state_backend

    opts = RunOptions.from_params(ctx.params, workspace=name)
    existing = state_backend(opts).workspaces()  # also checks the name
    path = workspace_file(config_dir(opts.paths))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(name + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise fail("Cannot record the selected workspace", f"{path}: {exc.strerror}.") from exc
    print(f'Switched to workspace "{name}".')
    if name not in existing:
        print("It has no state yet: the first apply in it creates it.")
    overriding = os.environ.get("SUBSTRATUS_WORKSPACE", "").strip()
    if overriding and overriding != name:
        print(f"Note: SUBSTRATUS_WORKSPACE={overriding} is set and takes precedence.")


def workspace_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The workspace to delete.")],
    force: Annotated[
        bool, typer.Option("--force", help="Delete even if its state records resources.")
    ] = False,
    files: Files = None,
    state: StateUrl = None,
    lock: Lock = True,
    lock_timeout: LockTimeout = "0s",
) -> None:
    """Delete a workspace's state (not what it created). Refuses default and the current one.

    Example: substratus workspace delete feature-x
    """
    from substratus.cli.locking import locked
    from substratus.cli.prepare import state_backend
    from substratus.engine.backend import StateConflict

    opts = RunOptions.from_params(ctx.params, workspace=name)
    if name == "default":
        raise fail("Cannot delete the default workspace", "It always exists.")
    if name == current_workspace(config_dir(opts.paths)):
        raise fail(
            f'Cannot delete the current workspace "{name}"',
            "Select another one first: substratus workspace select default",
        )
    backend = state_backend(opts)
    if name not in backend.workspaces():
        raise fail(f'Workspace "{name}" does not exist', "See `substratus workspace list`.")
    with locked(backend, "workspace delete", opts.lock.enabled, opts.lock.timeout):
        current, token = backend.read()
        if current is not None and current.resources and not force:
            raise fail(
                f'Workspace "{name}" is not empty',
                f"Its state records {len(current.resources)} resource(s), which would keep "
                f"running unmanaged. Destroy them first (substratus destroy --workspace {name}) "
                "or pass --force to forget them.",
            )
        try:
            _delete_state(backend, token)
        except StateConflict as exc:
            raise fail("Cannot delete the workspace", str(exc)) from exc
        forgotten = len(current.resources) if current is not None else 0
    print(f'Deleted workspace "{name}".')
    _remove_workdir(opts, forgotten)


def _remove_workdir(opts: RunOptions, forgotten: int) -> None:
    """Remove the deleted workspace's ``.substratus/workspaces/NAME/`` (its local artifacts,
    runs and builds), and ``workspaces/`` when that leaves it empty — unless ``forgotten``
    resources (``--force``) may still run from it."""
    import shutil

    from substratus.wiring import Overrides, resolve

    workdir = resolve(None, opts.paths, Overrides(workspace=opts.settings.workspace)).workdir
    if not workdir.exists():
        return
    shown = os.path.relpath(workdir)
    if forgotten:
        print(f"Kept {shown}: the {forgotten} forgotten resource(s) may still use it.")
        return
    try:
        shutil.rmtree(workdir)
        workdir.parent.rmdir()  # workspaces/, when no other workspace has a directory there
    except OSError:
        if workdir.exists():
            print(f"Warning: could not remove {shown}; remove it by hand.")


def _delete_state(backend: Backend, token: str | None) -> None:
    if not isinstance(backend, _DeletesWorkspace):
        raise fail("This state backend cannot delete workspaces", f"{backend.url}")
    backend.delete_workspace(token)
