"""CLI commands about the recorded state: ``show``, ``state list|show|rm|pull|push|recover``,
``workspace list|select|delete``, ``force-unlock`` and ``output``. Registered on
``substratus.cli.app``.

``state recover`` rebuilds a damaged state (a journal that does not belong to its base, which
every other command refuses to read) through the backend's ``Recovers.recover``, under the lock.

Workspaces: ``select`` records the choice in ``<config dir>/.substratus/workspace`` (read by every
command when neither ``--workspace`` nor ``SUBSTRATUS_WORKSPACE`` is given); ``delete`` refuses
``default`` and the selected workspace, takes the workspace's lock, refuses a state that still
records resources unless ``--force``, and removes the state with compare-and-swap
(``delete_workspace``, under the lock).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Protocol, runtime_checkable

import typer

from substratus.cli.app import app
from substratus.cli.apply import locked, read_plan
from substratus.cli.errors import use_color
from substratus.cli.options import Files, Lock, LockTimeout, NoColor, StateUrl, Workspace
from substratus.engine.backend import Backend, LockNotFound, Recovers, StateConflict
from substratus.engine.config import load_config
from substratus.engine.diagnostic import DiagnosticError, fail
from substratus.engine.render import render_plan
from substratus.engine.statefile import ResourceRecord, StateFile
from substratus.wiring import (
    config_dir,
    current_workspace,
    make_backend,
    resolve,
    workspace_file,
)

state_app = typer.Typer(
    help="Inspect and edit the recorded state (advanced).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(state_app, name="state")
workspace_app = typer.Typer(
    help="Workspaces: independent states (and locks) in one backend, e.g. staging and prod.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(workspace_app, name="workspace")


@runtime_checkable
class _DeletesWorkspace(Protocol):
    def delete_workspace(self, expected_token: str | None) -> None: ...


def _backend(files: list[str] | None, state: str | None, workspace: str) -> Backend:
    paths = files or ["."]
    try:
        cfg = load_config(paths)
    except DiagnosticError:
        cfg = None  # the state commands work even when the configuration is broken
    r = resolve(
        cfg, paths, state=state, runtime=None, artifacts=None, workspace=workspace, namespace=None
    )
    return make_backend(r)


def recorded_key(records: Mapping[str, ResourceRecord], address: str) -> str:
    """The state key of ``address``: as written, or without a namespace part that names the
    record's own (default) namespace — ``default/model.x`` is recorded as ``model.x``."""
    if address in records:
        return address
    namespace, _, short = address.partition("/")
    rec = records.get(short) if short else None
    return short if rec is not None and rec.namespace == namespace else address


def _read(backend: Backend) -> StateFile:
    current, _ = backend.read()
    if current is None:
        raise fail(
            "No state",
            f"There is no state in {backend.url} (workspace "
            f"{backend.workspace}) yet. Run `substratus apply` first.",
        )
    return current


@app.command()
def show(
    planfile: Annotated[
        Path | None, typer.Argument(help="A saved plan; without it, the state is shown.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
    no_color: NoColor = False,
    output_format: Annotated[
        str, typer.Option("--format", help="text, or markdown (a pull-request comment).")
    ] = "text",
) -> None:
    """Show a saved plan, or the current state.

    Examples: substratus show plan.json; substratus show --json plan.json; substratus show
    --format markdown plan.json; substratus show
    """
    if output_format not in ("text", "markdown"):
        raise fail(f"Unknown --format {output_format!r}", "Use --format text or --format markdown.")
    if planfile is not None:
        the_plan = read_plan(planfile)
        if as_json:
            print(the_plan.to_json(), end="")
        elif output_format == "markdown":
            from substratus.ci.review import file_sha256, plan_markdown

            sha = file_sha256(planfile)
            print(plan_markdown(the_plan, sha256=sha, plan_file=planfile), end="")
        else:
            print(render_plan(the_plan, color=use_color(no_color) and sys.stdout.isatty()), end="")
        return
    current, _ = _backend(files, state, workspace).read()
    if as_json:
        print((current or StateFile()).to_json(), end="")
        return
    if current is None or not current.resources:
        print("The state is empty. Run `substratus apply` to create resources.")
        return
    for addr, rec in sorted(current.resources.items()):
        print(
            f"# {addr}  ({rec.status}, digest {rec.digest[:12] or '-'}, applied "
            f"{rec.applied_at or '-'})"
        )
        for k, v in sorted(rec.outputs.items()):
            print(f"    {k} = {json.dumps(v)}")
        print()


@state_app.command("list")
def state_list(
    files: Files = None, workspace: Workspace = "default", state: StateUrl = None
) -> None:
    """List the addresses in the state.  Example: substratus state list"""
    current, _ = _backend(files, state, workspace).read()
    for addr in sorted((current or StateFile()).resources):
        print(addr)


@state_app.command("show")
def state_show(
    address: Annotated[str, typer.Argument(help="Address, e.g. model.base")],
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
) -> None:
    """Show one recorded resource.  Example: substratus state show model.tuned-ngram"""
    current = _read(_backend(files, state, workspace))
    address = recorded_key(current.resources, address)
    rec = current.resources.get(address)
    if rec is None:
        raise fail(
            f"No resource {address} in the state",
            "See `substratus state list` for the recorded addresses.",
        )
    print(json.dumps({address: rec.model_dump(mode="json", exclude_none=True)}, indent=2))


@state_app.command("rm")
def state_rm(
    addresses: Annotated[list[str], typer.Argument(help="Addresses to forget.")],
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
    lock: Lock = True,
    lock_timeout: LockTimeout = "0s",
) -> None:
    """Forget resources without destroying them (they keep running, unmanaged).

    Example: substratus state rm modelserver.old
    """
    backend = _backend(files, state, workspace)
    with locked(backend, "state rm", lock, lock_timeout):
        current, token = backend.read()
        if current is not None:
            addresses = [recorded_key(current.resources, a) for a in addresses]
        missing = [a for a in addresses if current is None or a not in current.resources]
        if missing or current is None:
            raise fail("Not in the state", f"{', '.join(missing)}: see `substratus state list`.")
        for a in addresses:
            del current.resources[a]
        current.serial += 1
        backend.write(current, token, list(addresses))
    for a in addresses:
        print(f"Removed {a}")
    print(f"Successfully removed {len(addresses)} resource(s) from the state.")


@state_app.command("pull")
def state_pull(
    files: Files = None, workspace: Workspace = "default", state: StateUrl = None
) -> None:
    """Print the state JSON.  Example: substratus state pull > backup.json"""
    print(_read(_backend(files, state, workspace)).to_json(), end="")


@state_app.command("push")
def state_push(
    file: Annotated[Path, typer.Argument(help="A state JSON file (from `state pull`).")],
    force: Annotated[bool, typer.Option("--force", help="Skip lineage/serial checks.")] = False,
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
    lock: Lock = True,
    lock_timeout: LockTimeout = "0s",
) -> None:
    """Replace the stored state with a file, refusing an unrelated lineage or an older serial.

    Example: substratus state push backup.json
    """
    try:
        new = StateFile.from_json(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail("Cannot read the state file", f"{file}: {exc.strerror}.") from exc
    except ValueError as exc:
        raise fail("Invalid state file", f"{file}: {exc}.") from exc
    backend = _backend(files, state, workspace)
    with locked(backend, "state push", lock, lock_timeout):
        current, token = backend.read()
        if current is not None and not force:
            if current.lineage != new.lineage:
                raise fail(
                    "Cannot push: different lineage",
                    f"{file} has lineage {new.lineage}, the stored state "
                    f"{current.lineage}; they are unrelated states. Use --force only if "
                    "you are sure.",
                )
            if new.serial < current.serial:
                raise fail(
                    "Cannot push: older serial",
                    f"{file} has serial {new.serial}, older than the stored "
                    f"{current.serial}. Use --force only if you are sure.",
                )
            if new.serial == current.serial and new.to_json() != current.to_json():
                raise fail(
                    "Cannot push: same serial, different content",
                    f"Both are at serial {new.serial} but differ. Use --force only if "
                    "you are sure.",
                )
        new.serial = max(new.serial, current.serial + 1 if current else new.serial)
        backend.write(new, token, sorted(new.resources))
    print(f"Pushed {file} (serial {new.serial}, {len(new.resources)} resources).")


@state_app.command("recover")
def state_recover(
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="A copy of the state the journal continues (default: the backend's own copies).",
        ),
    ] = None,
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
    lock: Lock = True,
    lock_timeout: LockTimeout = "0s",
) -> None:
    """Rebuild a damaged state by replaying its journal over a copy of the state it continues.

    Use it when a command reports that the state journal does not belong to the state. The
    damaged files are kept beside the new ones. Examples: substratus state recover;
    substratus state recover --from backup.json
    """
    source = None
    if from_file is not None:
        try:
            source = (str(from_file), from_file.read_bytes())
        except OSError as exc:
            raise fail("Cannot read the state file", f"{from_file}: {exc.strerror}.") from exc
    backend = _backend(files, state, workspace)
    if not isinstance(backend, Recovers):
        raise fail("This state backend cannot rebuild a state", f"{backend.url}")
    with locked(backend, "state recover", lock, lock_timeout):
        print(backend.recover(source))


@workspace_app.command("list")
def workspace_list(
    files: Files = None, workspace: Workspace = "default", state: StateUrl = None
) -> None:
    """List the workspaces of the state backend; * marks the current one.

    Example: substratus workspace list
    """
    names = _backend(files, state, workspace).workspaces()
    for name in sorted({*names, workspace}):
        note = "" if name in names else "  (no state yet)"
        print(f"{'*' if name == workspace else ' '} {name}{note}")


@workspace_app.command("select")
def workspace_select(
    name: Annotated[str, typer.Argument(help="The workspace to use from now on.")],
    files: Files = None,
    state: StateUrl = None,
) -> None:
    """Use NAME when --workspace is not given (recorded for this configuration directory).

    Example: substratus workspace select staging
    """
    existing = _backend(files, state, name).workspaces()  # also checks the name
    path = workspace_file(config_dir(files or ["."]))
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


@workspace_app.command("delete")
def workspace_delete(
    name: Annotated[str, typer.Argument(help="The workspace to delete.")],
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
    if name == "default":
        raise fail("Cannot delete the default workspace", "It always exists.")
    if name == current_workspace(config_dir(files or ["."])):
        raise fail(
            f'Cannot delete the current workspace "{name}"',
            "Select another one first: substratus workspace select default",
        )
    backend = _backend(files, state, name)
    if name not in backend.workspaces():
        raise fail(f'Workspace "{name}" does not exist', "See `substratus workspace list`.")
    with locked(backend, "workspace delete", lock, lock_timeout):
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
    print(f'Deleted workspace "{name}".')


def _delete_state(backend: Backend, token: str | None) -> None:
    if not isinstance(backend, _DeletesWorkspace):
        raise fail("This state backend cannot delete workspaces", f"{backend.url}")
    backend.delete_workspace(token)


@app.command("force-unlock")
def force_unlock(
    lock_id: Annotated[str, typer.Argument(help="The lock ID shown in the lock error.")],
    force: Annotated[bool, typer.Option("--force", help="Do not ask for confirmation.")] = False,
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
) -> None:
    """Remove a lock left by an operation that died. Dangerous if it is still running.

    Example: substratus force-unlock 6f1c2d3e-...
    """
    backend = _backend(files, state, workspace)
    if not force:
        if not sys.stdin.isatty():
            raise fail("No confirmation possible", "Pass --force to unlock without a prompt.")
        print(
            "Do you really want to force-unlock?\n  substratus will remove the lock on the "
            "state. This will allow local substratus commands to modify this state, even "
            "though it may still be in use. Only 'yes' will be accepted to confirm."
        )
        if input("  Enter a value: ").strip() != "yes":
            raise fail("force-unlock cancelled", "The lock was not removed.")
    try:
        removed = backend.force_unlock(lock_id)
    except LockNotFound as exc:
        raise fail("Cannot force-unlock", f"{exc}") from exc
    print(f"substratus state has been successfully unlocked! Removed lock:\n{removed.describe()}")


@app.command()
def output(
    address: Annotated[str | None, typer.Argument(help="Only this resource.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
) -> None:
    """Print the outputs of applied resources (endpoints, artifact URLs, logs).

    Example: substratus output modelserver.tuned-ngram
    """
    current, _ = _backend(files, state, workspace).read()
    records = (current or StateFile()).resources
    if address is not None:
        address = recorded_key(records, address)
    if address is not None and address not in records:
        raise fail(
            f"No resource {address} in the state",
            "See `substratus state list` for the recorded addresses.",
        )
    selected: dict[str, Any] = {
        a: r.outputs for a, r in sorted(records.items()) if address is None or a == address
    }
    if as_json:
        print(json.dumps(selected, indent=2))
        return
    for a, outs in selected.items():
        for k, v in sorted(outs.items()):
            print(f"{a}.{k} = {json.dumps(v)}")
