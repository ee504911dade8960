"""What the ``notebook`` command (``substratus.cli.notebook``) does once its options are read:
write the notebook's document for ``-d DIR``/``--from``, plan and apply just that notebook under
the state lock, open a session, wait for Jupyter, sync the work back until the user quits, and
suspend it. Imported when the command runs, not at start-up."""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
import webbrowser
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from substratus.cli.console import confirm, plan_color, print_plan
from substratus.cli.locking import locked
from substratus.cli.options import RunOptions
from substratus.cli.prepare import Prepared, setup
from substratus.cli.walk import report, walk
from substratus.engine import kinds
from substratus.engine.address import Address
from substratus.engine.config import Config
from substratus.engine.diagnostic import fail
from substratus.engine.failure import Failure
from substratus.engine.operation import PlanOptions
from substratus.engine.plan import Action, Mode
from substratus.engine.session import NotebookAccess, NotebookSession
from substratus.wiring import Resolved, make_backend, make_runtime

_SLUG = re.compile(r"[^a-z0-9-]+")


def _slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")[:50].strip("-") or "notebook"


def _write_document(base: Path, name: str, spec: dict[str, Any], namespace: str | None) -> None:
    # declared suspended: the command runs it while it lasts and leaves it suspended, so a plain
    # `plan` afterwards has nothing to do (--no-suspend rewrites it as running)
    doc: dict[str, Any] = {"kind": "Notebook", "name": name, "spec": {**spec, "suspend": True}}
    if namespace:
        doc["namespace"] = namespace
    path = base / ".substratus" / "notebooks" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by `substratus notebook`; delete it to forget this notebook.\n"
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def _from_directory(directory: Path, r: Resolved) -> str:
    d = directory.resolve()
    if not d.is_dir():
        raise fail(f"{directory} is not a directory", "Give the directory of your notebook code.")
    if r.runtime == "kubernetes" and not (d / "Dockerfile").is_file():
        raise fail(
            f"No Dockerfile in {d}",
            "On a cluster the notebook's image is built from the directory: add a Dockerfile "
            "(FROM an image with Jupyter, e.g. substratusai/base) and a notebook.sh.",
        )
    container: dict[str, Any] = {"local": {"path": str(d)}}
    if r.runtime == "local" and not any(
        (d / p).is_file() for p in ("notebook.sh", "scripts/notebook.sh")
    ):
        from substratus.notebook.jupyter import INSTALL, jupyter_command

        command = jupyter_command()
        if command is None:
            raise fail(
                f"No notebook.sh in {d}, and Jupyter is not installed",
                f"To start a notebook in the directory, {INSTALL} (e.g. `exec jupyter lab "
                "--port=$PORT --IdentityProvider.token=$NOTEBOOK_TOKEN`).",
            )
        container["command"] = command
    name = _slug(d.name)
    _write_document(r.base, name, {"container": container}, None)
    return name


def _from_resource(cfg: Config, source: str, r: Resolved) -> str:
    from substratus.cli.addresses import parse
    from substratus.engine.address import did_you_mean

    versioned = [str(a) for a, res in cfg.resources.items() if kinds.versioned(res.kind)]
    parse(source, lambda: versioned)  # a malformed address: the message every command gives
    found = [res for a, res in cfg.resources.items() if source in (str(a), f"{a.kind}.{a.name}")]
    if len(found) != 1 or not kinds.versioned(found[0].kind):
        raise fail(
            f"--from {source}: no such Model or Dataset in the configuration",
            "Name one as `model.NAME` or `dataset.NAME` (see `substratus state list`)."
            + did_you_mean(source, versioned),
        )
    res = found[0]
    container = dict(res.spec.get("container") or {})
    if not container:
        raise fail(f"{source} has no container to start a notebook with", "")
    container.pop("command", None)  # the notebook's own command (notebook.sh) runs instead
    if "local" in container:
        base = Path(res.file).parent if res.file else r.base
        container["local"] = {"path": str((base / container["local"]["path"]).resolve())}
    spec: dict[str, Any] = {"container": container, "params": kinds.params(res.kind, res.spec)}
    trainer = res.spec.get("trainer") or {}
    if trainer.get("baseModel"):
        spec["sourceModel"] = trainer["baseModel"]
    if trainer.get("dataset"):
        spec["dataset"] = trainer["dataset"]
    if res.kind == "dataset":
        spec["dataset"] = {"name": res.name}
    declared = kinds.resources(res.kind, res.spec)
    spec["resources"] = dict(declared) if declared is not None else None
    name = _slug(f"{res.name}-{res.kind}")
    _write_document(r.base, name, spec, res.namespace)
    return name


def _apply(
    cfg: Config,
    r: Resolved,
    addr: Address,
    opts: RunOptions,
    suspend: bool,
    quiet: bool = False,
) -> None:
    cfg.resources[addr].spec["suspend"] = suspend
    prepared = Prepared(
        cfg,
        r,
        make_backend(r),
        make_runtime(r),
        PlanOptions(mode=Mode.NORMAL, targets=[addr], workspace=r.workspace),
    )
    with locked(prepared.backend, "notebook", opts.lock.enabled, opts.lock.timeout) as watch:
        current, token = prepared.backend.read()
        plan = prepared.plan(current)
        if not quiet:
            print_plan(plan, plan_color(opts.output.no_color))
        if not plan.has_changes:
            return
        others = [
            c.address
            for c in plan.changes()
            if c.address != str(addr) and c.action in (Action.DELETE, Action.REPLACE)
        ]
        if others and not opts.apply.auto_approve:
            confirm(
                "This replaces or destroys more than the notebook. Continue?",
                f"Replacing {', '.join(others)}",
            )
        result = walk(plan, current, token, prepared.backend, r, cfg, opts, lock=watch)
        # reported under the lock: a lock that cannot be removed then (the state's file
        # system went read-only) is a warning after the report, not an error instead of it
        report(plan, result, False)


def _wait_ready(session: NotebookSession, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not session.ready():
        if time.monotonic() > deadline:
            raise fail(
                f"Jupyter did not answer at {session.url} within {timeout:.0f} s",
                "Look at the notebook's log (`substratus output`), or raise --timeout.",
            )
        time.sleep(0.5)


def _sync(session: NotebookSession, local_dir: Path, stop: threading.Event) -> None:
    changes = session.changes()
    if changes is None:
        return
    from substratus.notebook.sync import SyncBack

    def say(event: Any) -> None:
        print(
            f"sync: {event.kind} {event.path}{': ' + event.detail if event.detail else ''}",
            flush=True,
        )

    sync = SyncBack(local_dir, session.read_file, say)
    for change in changes:
        if stop.is_set():
            return
        sync.handle(change)


def _local_dir(cfg: Config, addr: Address) -> Path | None:
    for dep in cfg.resources[addr].dependencies:
        build = cfg.resources.get(dep.address)
        if dep.role == "build" and build is not None and build.spec.get("source") == "local":
            return Path(str(build.spec["path"]))
    return None


def _wait_for_quit(stop: threading.Event) -> None:
    """Until ``q`` + Enter on stdin, Ctrl-C or SIGTERM; the command then goes on (to suspend
    the notebook). While it waits, Ctrl-C and SIGTERM only set ``stop``: an exception raised
    inside ``Event.wait`` can leave its lock released twice (CPython 3.11: "release unlocked
    lock")."""

    def quit_(_signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, quit_) for sig in (signal.SIGINT, signal.SIGTERM)}

    def read() -> None:
        for line in sys.stdin:
            if line.strip().lower() in ("q", "quit", "exit"):
                stop.set()
                return

    try:
        threading.Thread(target=read, daemon=True).start()
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(
    opts: RunOptions,
    notebook: tuple[str | None, Path | None, str | None],
    port: int,
    wait: float,
    *,
    open_browser: bool,
    suspend: bool,
) -> None:
    """The ``notebook`` command once its options are read: the ``notebook`` asked for (NAME,
    ``-d DIR`` or ``--from``) applied, attended until the user quits, then left (suspended
    unless not ``suspend``)."""
    name, directory, source = notebook
    cfg, r, addr = _configured(opts, name, directory, source)
    _apply(cfg, r, addr, opts, False)
    session = _open_session(r, addr, port)
    _attend(session, cfg, r, addr, wait, open_browser=open_browser, suspend=suspend)
    written = directory is not None or source is not None
    _leave(cfg, r, addr, opts, suspend=suspend, written=written)


def _leave(
    cfg: Config, r: Resolved, addr: Address, opts: RunOptions, *, suspend: bool, written: bool
) -> None:
    """Suspend the notebook (applied again with ``suspend: true``, without asking), or leave it
    running: a document this command ``written`` then declares it running."""
    generated = r.base / ".substratus" / "notebooks" / f"{addr.name}.yaml"
    if not suspend and written and generated.is_file():
        generated.write_text(generated.read_text().replace("suspend: true", "suspend: false"))
    if suspend:
        print(f"\nSuspending {addr}...", flush=True)
        approved = replace(opts, apply=replace(opts.apply, auto_approve=True))
        _apply(cfg, r, addr, approved, True, quiet=True)
        print(f"Suspended {addr}; run the same command again to resume it.")


def _configured(
    opts: RunOptions, name: str | None, directory: Path | None, source: str | None
) -> tuple[Config, Resolved, Address]:
    """The configuration with the notebook asked for (its document written first for ``-d`` and
    ``--from``), its settings, and the notebook's address. ``-d DIR`` where there is no
    configuration at all (``-f``, by default the current directory, holds no YAML) works on the
    defaults and the flags: the notebook's document is then the whole configuration."""
    if directory is not None:  # the document is written where `setup` loads it from
        name = _from_directory(directory, _settings(opts))
    elif source is not None:
        cfg, r = setup(opts)
        name = _from_resource(cfg, source, r)
    cfg, r = setup(opts)
    notebooks = [a for a in cfg.resources if a.kind == "notebook" and (name in (None, a.name))]
    if len(notebooks) != 1:
        known = ", ".join(sorted(a.name for a in cfg.resources if a.kind == "notebook")) or "none"
        raise fail(
            f"No notebook {name!r} in the configuration" if name else "Which notebook?",
            f"Notebooks configured: {known}. Give NAME, -d DIR or --from model.NAME.",
        )
    return cfg, r, notebooks[0]


def _settings(opts: RunOptions) -> Resolved:
    """The settings of the configuration, or of the defaults and the flags alone when the ``-f``
    paths are directories without any configuration file (nor a notebook written before)."""
    from substratus.engine.config import find_files
    from substratus.wiring import resolve, with_notebooks

    paths = with_notebooks(opts.paths)
    if all(Path(p).is_dir() for p in paths) and not find_files(paths)[0]:
        return resolve(None, paths, opts.settings)
    return setup(opts)[1]


def _open_session(r: Resolved, addr: Address, port: int) -> NotebookSession:
    """A session with the notebook just applied (a port forward on a cluster)."""
    rt = make_runtime(r)
    if not isinstance(rt, NotebookAccess):
        raise fail(f"The {r.runtime} runtime cannot open notebook sessions", "")
    current, _ = make_backend(r).read()
    record = current.resources.get(str(addr)) if current else None
    if record is None:
        raise fail(f"{addr} is not in the state after apply", "Run `substratus plan` to see why.")
    try:
        return rt.notebook_session(record.namespace, record.name, record.outputs, port)
    except Failure as exc:
        raise fail(f"Cannot open {addr}: {exc.summary}", exc.detail) from exc


def _attend(
    session: NotebookSession,
    cfg: Config,
    r: Resolved,
    addr: Address,
    wait: float,
    *,
    open_browser: bool,
    suspend: bool,
) -> None:
    """Wait for Jupyter, show (and open) its URL, sync the work back, until the user quits;
    the session is closed whatever happens."""
    stop = threading.Event()
    try:
        _wait_ready(session, wait)
        print(f"\nNotebook {addr} is ready:\n\n  {session.url}\n", flush=True)
        if open_browser:
            webbrowser.open(session.url)
        local = _local_dir(cfg, addr)
        if local is not None:
            threading.Thread(target=_sync, args=(session, local, stop), daemon=True).start()
            if session.changes is not None and r.runtime != "local":
                print(f"Syncing the notebook's files into {local}", flush=True)
        print(
            "Press q + Enter or Ctrl-C to stop" + (" and suspend it." if suspend else "."),
            flush=True,
        )
        _wait_for_quit(stop)
    finally:
        stop.set()
        session.close()
