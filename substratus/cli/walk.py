"""Running an apply from the CLI: the walk with live progress (``substratus.cli.progress``) and
the final report, which maps a failed walk to exit code 1."""

from __future__ import annotations

import sys
from typing import Any

import typer

from substratus.cli import signals
from substratus.cli.console import console
from substratus.cli.errors import EXIT_ERROR, print_diagnostics
from substratus.cli.options import RunOptions
from substratus.engine.apply import ApplyResult, Walker, said_once
from substratus.engine.backend import Backend, LockWatch
from substratus.engine.config import Config
from substratus.engine.diagnostic import Diagnostic
from substratus.engine.plan import Mode, Plan
from substratus.engine.runtime import Runtime
from substratus.engine.statefile import StateFile
from substratus.wiring import Resolved, make_runtime


def walk(
    plan: Plan,
    state: StateFile | None,
    token: str | None,
    backend: Backend,
    r: Resolved,
    config: Config,
    opts: RunOptions,
    runtime: Runtime | None = None,
    lock: LockWatch | None = None,
) -> ApplyResult:
    """Apply ``plan`` over ``state`` (read with ``token``) with ``opts``' parallelism, timeout
    and progress output (NDJSON with ``--json``, a live view on a terminal, plain lines
    otherwise)."""
    from substratus.cli.progress import JsonProgress, LiveProgress, PlainProgress

    runtime = runtime or make_runtime(r)
    progress: Any
    if opts.output.as_json:
        progress = JsonProgress()
    elif console.live():
        progress = LiveProgress(console.rich())
    else:
        progress = PlainProgress()
    walker = Walker(
        plan,
        state or StateFile.new(),
        token,
        backend,
        runtime,
        parallelism=opts.apply.parallelism,
        on_event=progress,
        config_dir=str(r.base),
        timeout=opts.apply.timeout,
        secrets={str(a): res.secrets for a, res in config.resources.items() if res.secrets},
        lock=lock,
    )
    try:
        result = walker.run()
    finally:
        progress.close()
    return result


def report(plan: Plan, result: ApplyResult, as_json: bool) -> None:
    """The outcome of an apply: the summary (an ``apply_summary`` event with ``--json``; in
    words, replacements said as the plan's ``render.replacement_note`` says them), each
    failure as a diagnostic; exit code 1 when anything failed."""
    s = plan.summary()
    if as_json:
        from substratus.cli.events import emit

        emit(
            {
                "type": "apply_summary",
                "ok": result.ok,
                "done": result.done,
                "failed": sorted(result.failed),
                "skipped": result.skipped,
                "detached": result.detached,
            }
        )
    if result.stopped is not None:  # first: what the user must fix before anything else
        print_diagnostics([Diagnostic.error(result.stopped.summary, result.stopped.detail)])
    for addr, err in sorted(result.failed.items()):
        detail = err.detail + (f"\n\nFull log: {err.log_path}" if err.log_path else "")
        print_diagnostics([diag(addr, said_once(err.summary, addr), detail)])
    if result.interrupted:
        sig = signals.name()
        print(
            f"\n{'Interrupted' if sig == 'SIGINT' else 'Stopped by ' + sig}: nothing new was "
            "started. Work still running was detached and is recorded in the state; the next "
            "apply adopts it.",
            file=sys.stderr,
        )
    where = f" (workspace {plan.workspace})" if plan.workspace != "default" else ""
    if result.ok and not as_json:
        from substratus.engine.render import replacement_note

        if plan.mode is Mode.DESTROY:
            print(f"\nDestroy complete{where}! Resources: {s['destroy']:,} destroyed.")
        elif plan.mode is Mode.REFRESH_ONLY:
            print(
                f"\nApply complete{where}! Recorded {len(result.done):,} change(s) made outside "
                "substratus."
            )
        else:
            print(
                f"\nApply complete{where}! Resources: {s['add']:,} added, {s['change']:,} changed, "
                f"{s['destroy']:,} destroyed.{replacement_note(plan)}"
            )
    if not result.ok:
        raise typer.Exit(EXIT_ERROR)


def diag(address: str, summary: str, detail: str) -> Diagnostic:
    return Diagnostic.error(summary, detail, address=address)
