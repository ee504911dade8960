"""Running an apply from the CLI: the state lock, the confirmation prompt, the walk with live
progress, and the final report. Used by ``apply`` and ``destroy`` in ``substratus.cli``."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from substratus.cli_options import addresses, parse_duration
from substratus.engine.apply import ApplyResult, Walker
from substratus.engine.backend import (
    Backend,
    LeaseRenewal,
    LockHeld,
    LockInfo,
    LockLost,
    LockNotFound,
    LockWatch,
    ci_context,
)
from substratus.engine.config import Config, load_config
from substratus.engine.diagnostic import Diagnostic, DiagnosticError, fail
from substratus.engine.operation import PlanOptions, build_plan, run_conflicts
from substratus.engine.plan import Mode, Plan, staleness
from substratus.engine.render import render_plan
from substratus.engine.runtime import Runtime
from substratus.engine.saved import differences
from substratus.engine.statefile import StateFile
from substratus.errors import EXIT_ERROR, print_diagnostics, use_color
from substratus.wiring import Resolved, make_backend, make_runtime, resolve


@contextmanager
def locked(backend: Backend, operation: str, enabled: bool, timeout: str) -> Iterator[LockWatch]:
    """Hold the state lock for the block (unless ``--no-lock``).

    With a backend whose lock has a lease (``LeaseRenewal``), a daemon thread renews it every
    third of the lease while the block runs and is stopped before the lock is released; a lock
    found taken over (or removed) is reported loudly, once, and through the ``LockWatch`` the
    block gets (the walker then stops). A lock taken over from an expired holder is reported
    when acquired."""
    watch = LockWatch()
    if not enabled:
        yield watch
        return
    from substratus.state import lock_with_timeout

    info = LockInfo(operation=operation, ci=ci_context())
    waited: list[bool] = []

    def on_wait(holder: LockInfo) -> None:
        if not waited:
            waited.append(True)
            print(
                f"Acquiring state lock. Held by {holder.who} ({holder.operation}) since "
                f"{holder.created}; waiting up to {timeout}...",
                file=sys.stderr,
            )

    try:
        lock_id = lock_with_timeout(backend, info, parse_duration(timeout), on_wait)
    except LockHeld as held:
        h = held.holder
        raise fail(
            "Error acquiring the state lock",
            f"The state is locked by {h.who} (pid {h.pid}) for {h.operation} since {h.created}."
            f"\n\nLock Info:\n{h.describe()}\n\n"
            + (f"{held.note}\n\n" if held.note else "")
            + "substratus acquires a state lock to protect the state from being written by "
            "multiple users at the same time. Wait for that operation to finish (or pass "
            "--lock-timeout 5m to wait), or, if its holder is gone, remove the lock with:\n\n"
            f"  substratus force-unlock {h.id}",
        ) from held
    renewal = None
    if isinstance(backend, LeaseRenewal):
        stale = backend.takeover
        if stale is not None:
            print(
                f"Warning: took over the expired lock of {stale.who} (pid {stale.pid}, "
                f"{stale.operation} since {stale.created}; its lease ended {stale.expires}): "
                "that run stopped renewing it (crashed, killed or cut off).",
                file=sys.stderr,
            )
        renewal = _Renewal(backend, lock_id, watch)
    try:
        yield watch
    finally:
        if renewal is not None:
            renewal.stop()
        try:
            backend.unlock(lock_id)
        except LockNotFound as exc:
            print(f"\nWarning: the state lock was no longer held: {exc}", file=sys.stderr)


class _Renewal:
    """Renews a leased lock every third of its lease on a daemon thread, until ``stop``."""

    def __init__(self, backend: LeaseRenewal, lock_id: str, watch: LockWatch) -> None:
        self.backend, self.lock_id, self.watch = backend, lock_id, watch
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lock-renewal", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(max(0.05, self.backend.lease_seconds / 3)):
            try:
                self.backend.renew(self.lock_id)
            except LockNotFound as exc:
                print(
                    f"\n!!! WARNING: the state lock {self.lock_id} was LOST ({exc}). Another run "
                    "may change the state now; this run's writes stay compare-and-swap and fail "
                    "rather than overwrite it. !!!",
                    file=sys.stderr,
                )
                self.watch.lose(LockLost(str(exc)))
                return
            except Exception as exc:  # failing past the retries: try again next time
                print(f"Warning: could not renew the state lock: {exc}", file=sys.stderr)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


# -- helpers -----------------------------------------------------------------------------------
def confirm(question: str, what: str) -> None:
    if not sys.stdin.isatty():
        raise fail(
            "No confirmation possible",
            f"{what} needs a 'yes' typed at a terminal, and there is none. Review the "
            "plan and pass --auto-approve, or apply a saved plan file.",
        )
    print(f"\n{question}\n  Only 'yes' will be accepted to approve.\n")
    answer = input("  Enter a value: ").strip()
    if answer != "yes":
        raise fail("Apply cancelled", "Nothing was changed.")


def walk(
    plan: Plan,
    state: StateFile | None,
    token: str | None,
    backend: Backend,
    r: Resolved,
    parallelism: int,
    as_json: bool,
    timeout: float | None,
    config: Config,
    runtime: Runtime | None = None,
    lock: LockWatch | None = None,
) -> ApplyResult:
    from substratus.progress import JsonProgress, LiveProgress, PlainProgress

    runtime = runtime or make_runtime(r)
    progress: Any
    if as_json:
        progress = JsonProgress()
    elif sys.stdout.isatty():
        from rich.console import Console

        progress = LiveProgress(Console())
    else:
        progress = PlainProgress()
    walker = Walker(
        plan,
        state or StateFile.new(),
        token,
        backend,
        runtime,
        parallelism=parallelism,
        on_event=progress,
        config_dir=str(r.base),
        timeout=timeout,
        secrets={str(a): res.secrets for a, res in config.resources.items() if res.secrets},
        lock=lock,
    )
    try:
        result = walker.run()
    finally:
        progress.close()
    return result


def report(plan: Plan, result: ApplyResult, as_json: bool) -> None:
    s = plan.summary()
    if as_json:
        import json

        print(
            json.dumps(
                {
                    "type": "apply_summary",
                    "ok": result.ok,
                    "done": result.done,
                    "failed": sorted(result.failed),
                    "skipped": result.skipped,
                    "detached": result.detached,
                }
            )
        )
    for addr, err in sorted(result.failed.items()):
        detail = err.detail + (f"\n\nFull log: {err.log_path}" if err.log_path else "")
        print_diagnostics([diag(addr, err.summary, detail)])
    if result.stopped is not None:
        print_diagnostics([Diagnostic.error(result.stopped.summary, result.stopped.detail)])
    if result.interrupted:
        print(
            "\nInterrupted: nothing new was started. Work still running was detached and is "
            "recorded in the state; the next apply adopts it.",
            file=sys.stderr,
        )
    where = f" (workspace {plan.workspace})" if plan.workspace != "default" else ""
    if result.ok and not as_json:
        if plan.mode is Mode.DESTROY:
            print(f"\nDestroy complete{where}! Resources: {s['destroy']} destroyed.")
        elif plan.mode is Mode.REFRESH_ONLY:
            print(
                f"\nApply complete{where}! Recorded {len(result.done)} change(s) made outside "
                "substratus."
            )
        else:
            print(
                f"\nApply complete{where}! Resources: {s['add']} added, {s['change']} changed, "
                f"{s['destroy']} destroyed."
            )
    if not result.ok:
        raise typer.Exit(EXIT_ERROR)


def diag(address: str, summary: str, detail: str) -> Diagnostic:
    return Diagnostic.error(summary, detail, address=address)


def plan_and_apply(
    files: list[str] | None,
    mode: Mode,
    target: list[str] | None,
    replace: list[str] | None,
    refresh: bool,
    auto_approve: bool,
    parallelism: int,
    timeout: float | None,
    as_json: bool,
    workspace: str,
    state: str | None,
    runtime: str | None,
    artifacts: str | None,
    namespace: str | None,
    lock: bool,
    lock_timeout: str,
    no_color: bool,
    operation: str,
    context: str | None = None,
    strict: bool = False,
    max_cost: float | None = None,
) -> None:
    p = prepare(
        files,
        mode=mode,
        target=target,
        replace=replace,
        refresh=refresh,
        workspace=workspace,
        state=state,
        runtime=runtime,
        artifacts=artifacts,
        namespace=namespace,
        context=context,
        strict=strict,
    )
    p.options.max_cost = max_cost
    cfg, r, backend = p.config, p.resolved, p.backend
    with locked(backend, operation, lock, lock_timeout) as watch:
        current, token = backend.read()
        the_plan = p.plan(current)
        if not as_json:
            print_plan(the_plan, use_color(no_color) and sys.stdout.isatty())
        if not the_plan.has_changes:
            return
        if not auto_approve:
            question = (
                "Do you really want to destroy all resources?"
                if mode is Mode.DESTROY
                else "Do you want to perform these actions?"
            )
            confirm(question, "destroy" if mode is Mode.DESTROY else "apply")
        print()
        result = walk(
            the_plan, current, token, backend, r, parallelism, as_json, timeout, cfg, lock=watch
        )
    report(the_plan, result, as_json)


def apply_saved(
    planfile: Path,
    files: list[str] | None,
    workspace: str | None,
    parallelism: int,
    timeout: float | None,
    as_json: bool,
    lock: bool,
    lock_timeout: str,
    max_cost: float | None = None,
) -> None:
    """Apply a saved plan: plan again with its options against the same state and
    configuration (``engine.saved``), refuse any difference, and run the plan made again.
    ``workspace``: the one asked for (``--workspace``, ``SUBSTRATUS_WORKSPACE`` or selected),
    None when none was; another than the plan's is refused."""
    the_plan = read_plan(planfile)
    st = the_plan.settings
    if workspace is not None and workspace != the_plan.workspace:
        raise fail(
            "The saved plan is for another workspace",
            f"{planfile} was made for the workspace {the_plan.workspace!r}, but this command "
            f"acts on {workspace!r}. Apply it in its own workspace (--workspace "
            f"{the_plan.workspace}), or plan again in {workspace!r}.",
        )
    paths = files or the_plan.config_files
    cfg = load_config(paths, namespace=str(st.get("namespace") or "default"))
    if cfg.digest != the_plan.config_digest:
        raise fail(
            "Saved plan is stale: the configuration changed",
            f"The configuration files ({', '.join(cfg.files)}) changed since {planfile} "
            "was created. Run plan again and apply the new plan.",
        )
    r = Resolved.from_plan_settings(st, the_plan.workspace)
    backend = make_backend(r)
    with locked(backend, "apply", lock, lock_timeout) as watch:
        current, token = backend.read()
        reason = staleness(
            the_plan, current.lineage if current else None, current.serial if current else None
        )
        if reason:
            raise fail("Saved plan is stale", reason)
        runtime = make_runtime(r)
        derived = _derive(the_plan, cfg, current, runtime, max_cost)
        _refuse_differences(planfile, differences(the_plan, derived))
        if not derived.has_changes:
            print("No changes. Nothing to apply.")
            return
        if not derived.refresh:  # a plan made with a refresh checked this already
            conflicts = [d for d in run_conflicts(derived, cfg, current, runtime) if d.is_error]
            if conflicts:
                raise DiagnosticError(conflicts)
        result = walk(
            derived, current, token, backend, r, parallelism, as_json, timeout, cfg, runtime, watch
        )
    report(derived, result, as_json)


def _refuse_differences(planfile: Path, problems: list[str]) -> None:
    """Stop when a saved plan differs from the plan made again (``engine.saved``)."""
    if not problems:
        return
    shown = "\n".join(f"  - {p}" for p in problems[:20])
    more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise fail(
        "The saved plan is not what its configuration and state produce",
        f"{planfile} differs from the plan made again from the same configuration and "
        f"state:\n{shown}{more}\n\nNothing was applied. The file was edited, or "
        "something changed outside substratus since it was made: run plan again, "
        "review it, and apply the new plan.",
    )


def _derive(
    saved: Plan,
    cfg: Config,
    current: StateFile | None,
    runtime: Runtime,
    max_cost: float | None,
) -> Plan:
    """The plan ``saved``'s options make from this configuration and state now."""
    options = PlanOptions(
        mode=saved.mode,
        targets=addresses(saved.targets, "the plan file's targets"),
        replace=addresses(saved.replace, "the plan file's replacements"),
        refresh=saved.refresh,
        workspace=saved.workspace,
        max_cost=max_cost,
    )
    return build_plan(cfg, current, runtime, options, settings=saved.settings)


@dataclass
class Prepared:
    """Everything a plan needs, wired from the command line: config, settings, backend,
    runtime and plan options."""

    config: Config
    resolved: Resolved
    backend: Backend
    runtime: Runtime
    options: PlanOptions

    def plan(self, current: StateFile | None) -> Plan:
        return build_plan(
            self.config,
            current,
            self.runtime,
            self.options,
            settings=self.resolved.as_plan_settings(),
        )


def prepare(
    files: list[str] | None,
    *,
    mode: Mode,
    target: list[str] | None,
    replace: list[str] | None,
    refresh: bool,
    workspace: str,
    state: str | None,
    runtime: str | None,
    artifacts: str | None,
    namespace: str | None,
    context: str | None = None,
    strict: bool = False,
) -> Prepared:
    cfg, r = setup(
        files,
        state=state,
        runtime=runtime,
        artifacts=artifacts,
        workspace=workspace,
        namespace=namespace,
        context=context,
    )
    options = PlanOptions(
        mode=mode,
        targets=addresses(target, "--target", cfg.default_namespace),
        replace=addresses(replace, "--replace", cfg.default_namespace),
        refresh=refresh,
        workspace=workspace,
        strict=strict,
    )
    return Prepared(cfg, r, make_backend(r), make_runtime(r), options)


def with_notebooks(paths: list[str]) -> list[str]:
    """``paths`` and the notebook documents ``substratus notebook -d/--from`` wrote beside the
    configuration (``.substratus/notebooks/*.yaml``): such a notebook stays a resource of the
    configuration until its file is deleted."""
    from substratus.wiring import config_dir

    given = {Path(p).resolve() for p in paths}
    folder = config_dir(paths) / ".substratus" / "notebooks"
    extra = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    return [*paths, *(str(p) for p in extra if p.resolve() not in given)]


def setup(
    files: list[str] | None,
    *,
    state: str | None,
    runtime: str | None,
    artifacts: str | None,
    workspace: str,
    namespace: str | None,
    context: str | None = None,
) -> tuple[Config, Resolved]:
    paths = with_notebooks(files or ["."])
    cfg = load_config(paths, namespace=namespace)
    r = resolve(
        cfg,
        paths,
        state=state,
        runtime=runtime,
        artifacts=artifacts,
        workspace=workspace,
        namespace=namespace,
        context=context,
    )
    return cfg, r


def print_plan(plan: Plan, color: bool) -> None:
    """The plan as text, headed by its workspace when that is not ``default``."""
    if plan.workspace != "default":
        print(f"Workspace: {plan.workspace}\n")
    print(render_plan(plan, color=color), end="")


def write_plan(path: Path, the_plan: Plan) -> None:
    import os

    try:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(the_plan.to_json(), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise fail(
            "Cannot write the plan file",
            f"{path}: {exc.strerror}. Choose a writable path with --out.",
        ) from exc


def read_plan(path: Path) -> Plan:
    try:
        return Plan.from_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail("Cannot read the plan file", f"{path}: {exc.strerror}.") from exc
    except ValueError as exc:
        raise fail("Invalid plan file", f"{path}: {exc}.") from exc
