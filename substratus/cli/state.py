"""The commands about the recorded state: ``state list|show|rm|pull|push|recover`` and
``force-unlock``; ``recorded_key`` and ``read_state`` are shared with ``show`` and ``output``.

``state recover`` rebuilds a damaged state (a journal that does not belong to its base, which
every other command refuses to read) through the backend's ``Recovers.recover``, under the lock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from substratus.cli.addresses import complete
from substratus.cli.options import Files, Lock, LockTimeout, RunOptions, StateUrl, Workspace
from substratus.engine.diagnostic import fail

# The state backends and the state model are imported by the commands that use them, not at
# start-up (``--help`` and ``version`` do not need them).
if TYPE_CHECKING:
    from substratus.engine.backend import Backend
    from substratus.engine.statefile import ResourceRecord, StateFile


def recorded_key(records: Mapping[str, ResourceRecord], address: str) -> str:
    """The state key of ``address``: as written, or without a namespace part that names the
    record's own (default) namespace — ``default/model.x`` is recorded as ``model.x``."""
    if address in records:
        return address
    namespace, _, short = address.partition("/")
    rec = records.get(short) if short else None
    return short if rec is not None and rec.namespace == namespace else address


def recorded_address(records: Mapping[str, ResourceRecord], address: str) -> str:
    """The state key of ``address`` (``recorded_key``), refused with the message every command
    gives when it is malformed or not recorded, naming the closest recorded address."""
    from substratus.cli.addresses import missing, parse

    parse(address, lambda: records)
    key = recorded_key(records, address)
    if key not in records:
        hint = "See `substratus state list` for the recorded addresses."
        raise missing(key, "the state", records, hint)
    return key


def read_state(backend: Backend) -> StateFile:
    """The state ``backend`` holds; none yet is an error."""
    current, _ = backend.read()
    if current is None:
        raise fail(
            "No state",
            f"There is no state in {backend.url} (workspace "
            f"{backend.workspace}) yet. Run `substratus apply` first.",
        )
    return current


def state_list(
    ctx: typer.Context,
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
) -> None:
    """List the addresses in the state.  Example: substratus state list"""
    from substratus.cli.prepare import state_backend
    from substratus.engine.statefile import StateFile

    current, _ = state_backend(RunOptions.from_params(ctx.params)).read()
    for addr in sorted((current or StateFile()).resources):
        print(addr)


def state_show(
    ctx: typer.Context,
    address: Annotated[
        str,
        typer.Argument(metavar="ADDR", help="Address, e.g. model.base", autocompletion=complete),
    ],
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
) -> None:
    """Show one recorded resource.  Example: substratus state show model.tuned-ngram"""
    from substratus.cli.prepare import state_backend

    current = read_state(state_backend(RunOptions.from_params(ctx.params)))
    address = recorded_address(current.resources, address)
    rec = current.resources[address]
    print(json.dumps({address: rec.model_dump(mode="json", exclude_none=True)}, indent=2))


def state_rm(
    ctx: typer.Context,
    addresses: Annotated[
        list[str],
        typer.Argument(metavar="ADDR", help="Addresses to forget.", autocompletion=complete),
    ],
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
    lock: Lock = True,
    lock_timeout: LockTimeout = "0s",
) -> None:
    """Forget resources without destroying them (they keep running, unmanaged).

    Example: substratus state rm modelserver.old
    """
    from substratus.cli.locking import locked
    from substratus.cli.prepare import state_backend

    opts = RunOptions.from_params(ctx.params)
    backend = state_backend(opts)
    with locked(backend, "state rm", opts.lock.enabled, opts.lock.timeout):
        current, token = backend.read()
        records = current.resources if current is not None else {}
        addresses = [recorded_address(records, a) for a in addresses]
        assert current is not None  # recorded_address found them all
        for a in addresses:
            del current.resources[a]
        current.serial += 1
        backend.write(current, token, list(addresses))
    for a in addresses:
        print(f"Removed {a}")
    print(f"Successfully removed {len(addresses)} resource(s) from the state.")


def state_pull(
    ctx: typer.Context,
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
) -> None:
    """Print the state JSON.  Example: substratus state pull > backup.json"""
    from substratus.cli.prepare import state_backend

    print(read_state(state_backend(RunOptions.from_params(ctx.params))).to_json(), end="")


def state_push(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A state JSON file (from `state pull`).")
    ],
    force: Annotated[bool, typer.Option("--force", help="Skip lineage/serial checks.")] = False,
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
    lock: Lock = True,
    lock_timeout: LockTimeout = "0s",
) -> None:
    """Replace the stored state with a file, refusing an unrelated lineage or an older serial
    (unless --force) and, always, a file whose records are not valid.

    Example: substratus state push backup.json
    """
    from substratus.cli.locking import locked
    from substratus.cli.prepare import state_settings
    from substratus.wiring import make_backend

    opts = RunOptions.from_params(ctx.params)
    resolved = state_settings(opts)
    new = _pushed_state(file, resolved.namespace)
    backend = make_backend(resolved)
    with locked(backend, "state push", opts.lock.enabled, opts.lock.timeout):
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


def _pushed_state(file: Path, default_namespace: str) -> StateFile:
    """The state in ``file``, refused (even with ``--force``) when a record is keyed by
    anything but its own address or depends on something that is not an address: the next
    plan would delete the real resource."""
    from substratus.engine.statefile import StateFile
    from substratus.state.records import record_problems

    try:
        new = StateFile.from_json(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail("Cannot read the state file", f"{file}: {exc.strerror}.") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise fail("Invalid state file", f"{file}: {exc}.") from exc
    problems = record_problems(new, default_namespace)
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise fail(
            "Invalid state file",
            f"{file} cannot be pushed, even with --force:\n{listed}{more}\n\nA record that is "
            "not keyed by its own address would make the next plan delete the real resource. "
            "Fix the file (`substratus state pull` shows how records are keyed; resources in "
            f"the default namespace {default_namespace!r} are keyed without it) and push again.",
        )
    return new


def state_recover(
    ctx: typer.Context,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            metavar="FILE",
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
    from substratus.cli.locking import locked
    from substratus.cli.prepare import state_backend
    from substratus.engine.backend import Recovers

    opts = RunOptions.from_params(ctx.params)
    backend = state_backend(opts)
    if not isinstance(backend, Recovers):
        raise fail("This state backend cannot rebuild a state", f"{backend.url}")
    with locked(backend, "state recover", opts.lock.enabled, opts.lock.timeout):
        print(backend.recover(source))


def force_unlock(
    ctx: typer.Context,
    lock_id: Annotated[
        str, typer.Argument(metavar="LOCK_ID", help="The lock ID shown in the lock error.")
    ],
    force: Annotated[bool, typer.Option("--force", help="Do not ask for confirmation.")] = False,
    files: Files = None,
    workspace: Workspace = "default",
    state: StateUrl = None,
) -> None:
    """Remove a lock left by an operation that died. Dangerous if it is still running.

    Example: substratus force-unlock 6f1c2d3e-...
    """
    from substratus.cli.prepare import state_backend
    from substratus.engine.backend import LockNotFound

    backend = state_backend(RunOptions.from_params(ctx.params))
    if not force:  # the answer from standard input, a terminal or not, as apply reads it
        from substratus.cli.console import confirm

        confirm(
            "Do you really want to force-unlock?\n  substratus will remove the lock on the "
            "state. This will allow local substratus commands to modify this state, even "
            "though it may still be in use.",
            "force-unlock",
        )
    try:
        removed = backend.force_unlock(lock_id)
    except LockNotFound as exc:
        raise fail("Cannot force-unlock", f"{exc}") from exc
    print(f"substratus state has been successfully unlocked! Removed lock:\n{removed.describe()}")
