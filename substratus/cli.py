"""The ``substratus`` command line (typer): the composition root.

It wires configuration, a state backend and a runtime together (``substratus.wiring``), owns
locking, prompting and printing, and maps every outcome to an exit code (``substratus.errors``):
0 success / no changes, 1 error, 2 ``plan --detailed-exitcode`` with changes. Commands about the
state itself live in ``substratus.cli_state``.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from substratus import __version__
from substratus.engine.address import Address
from substratus.engine.apply import ApplyResult, Walker
from substratus.engine.backend import Backend, LockHeld, LockInfo, ci_context
from substratus.engine.config import Config, load_config
from substratus.engine.diagnostic import Diagnostic, DiagnosticError, fail
from substratus.engine.operation import PlanOptions, build_plan, read_externals, validate_config
from substratus.engine.plan import Mode, Plan, staleness
from substratus.engine.render import render_plan
from substratus.engine.statefile import StateFile
from substratus.errors import (
    EXIT_CHANGES,
    EXIT_ERROR,
    print_diagnostics,
    report_unexpected,
    use_color,
)
from substratus.wiring import Resolved, make_backend, make_runtime, resolve

app = typer.Typer(
    name="substratus",
    help="Plan and apply machine-learning resources (Datasets, Models, ModelServers, "
    "Notebooks) like Terraform: diff the configuration against the recorded state, show what "
    "will be built, loaded, retrained, rolled out or deleted and why, then apply it in order.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# -- shared options ----------------------------------------------------------------------------
Files = Annotated[
    list[str] | None,
    typer.Option(
        "-f",
        "--file",
        help="Configuration file or directory of *.yaml (repeatable; default: .).",
        envvar="SUBSTRATUS_FILE",
    ),
]
Workspace = Annotated[
    str, typer.Option("--workspace", help="State workspace.", envvar="SUBSTRATUS_WORKSPACE")
]
StateUrl = Annotated[
    str | None,
    typer.Option(
        "--state",
        help="State backend URL: file://DIR (default <config dir>/.substratus/state).",
        envvar="SUBSTRATUS_STATE",
    ),
]
RuntimeOpt = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        help="Where resources run: local (default) or kubernetes.",
        envvar="SUBSTRATUS_RUNTIME",
    ),
]
ArtifactsOpt = Annotated[
    str | None,
    typer.Option(
        "--artifacts",
        help="Artifact store URL (default <config dir>/.substratus/artifacts).",
        envvar="SUBSTRATUS_ARTIFACTS",
    ),
]
Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        help="Default namespace for resources that name none.",
        envvar="SUBSTRATUS_NAMESPACE",
    ),
]
Context = Annotated[
    str | None,
    typer.Option(
        "--context", help="Kubernetes context (kubernetes runtime).", envvar="SUBSTRATUS_CONTEXT"
    ),
]
Lock = Annotated[
    bool,
    typer.Option(
        "--lock/--no-lock",
        help="Lock the state while working (default: lock).",
        envvar="SUBSTRATUS_LOCK",
    ),
]
LockTimeout = Annotated[
    str,
    typer.Option(
        "--lock-timeout",
        help="How long to wait for a held lock, e.g. 0s, 30s, 5m.",
        envvar="SUBSTRATUS_LOCK_TIMEOUT",
    ),
]
NoColor = Annotated[bool, typer.Option("--no-color", help="Plain output without colours.")]
Parallelism = Annotated[
    int,
    typer.Option(
        "--parallelism",
        min=1,
        help="How many resources to apply at once.",
        envvar="SUBSTRATUS_PARALLELISM",
    ),
]
Target = Annotated[
    list[str] | None,
    typer.Option("--target", help="Limit to this address and its dependencies (repeatable)."),
]
Replace = Annotated[
    list[str] | None,
    typer.Option("--replace", help="Force this address to be replaced / run again (repeatable)."),
]
NoRefresh = Annotated[
    bool, typer.Option("--no-refresh", help="Do not check what actually runs; trust the state.")
]
RefreshOnly = Annotated[
    bool,
    typer.Option(
        "--refresh-only", help="Only record changes made outside substratus; change nothing."
    ),
]
AutoApprove = Annotated[bool, typer.Option("--auto-approve", help="Do not ask for confirmation.")]
Timeout = Annotated[
    float | None,
    typer.Option("--timeout", help="Seconds to wait for a server or notebook to become ready."),
]


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    for suffix in ("ms", "s", "m", "h"):
        if t.endswith(suffix) and t[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(t[: -len(suffix)]) * units[suffix]
    if t.replace(".", "", 1).isdigit():
        return float(t)
    raise fail(f"Invalid duration {text!r}", "Write a duration like 0s, 30s, 2m or 1h.")


def _addresses(values: list[str] | None, flag: str) -> list[Address]:
    out = []
    for v in values or []:
        try:
            out.append(Address.parse(v))
        except ValueError as exc:
            raise fail(f"Invalid {flag} address", str(exc) + ".") from exc
    return out


@contextmanager
def locked(backend: Backend, operation: str, enabled: bool, timeout: str) -> Iterator[None]:
    """Hold the state lock for the block (unless ``--no-lock``)."""
    if not enabled:
        yield
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
    try:
        yield
    finally:
        backend.unlock(lock_id)


# -- helpers -----------------------------------------------------------------------------------
def _setup(
    files: list[str] | None,
    *,
    state: str | None,
    runtime: str | None,
    artifacts: str | None,
    workspace: str,
    namespace: str | None,
) -> tuple[Config, Resolved]:
    paths = files or ["."]
    cfg = load_config(paths, namespace=namespace)
    r = resolve(
        cfg,
        paths,
        state=state,
        runtime=runtime,
        artifacts=artifacts,
        workspace=workspace,
        namespace=namespace,
    )
    return cfg, r


def _print_plan(plan: Plan, color: bool) -> None:
    print(render_plan(plan, color=color), end="")


def _confirm(question: str, what: str) -> None:
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


def _walk(
    plan: Plan,
    state: StateFile | None,
    token: str | None,
    backend: Backend,
    r: Resolved,
    parallelism: int,
    as_json: bool,
    timeout: float | None,
    config: Config,
) -> ApplyResult:
    from substratus.progress import JsonProgress, LiveProgress, PlainProgress

    runtime = make_runtime(r)
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
    )
    try:
        result = walker.run()
    finally:
        progress.close()
    return result


def _report(plan: Plan, result: ApplyResult, as_json: bool) -> None:
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
        print_diagnostics([_diag(addr, err.message, detail)])
    if result.interrupted:
        print(
            "\nInterrupted: nothing new was started. Work still running was detached and is "
            "recorded in the state; the next apply adopts it.",
            file=sys.stderr,
        )
    if result.ok and not as_json:
        if plan.mode is Mode.DESTROY:
            print(f"\nDestroy complete! Resources: {s['destroy']} destroyed.")
        elif plan.mode is Mode.REFRESH_ONLY:
            print(
                f"\nApply complete! Recorded {len(result.done)} change(s) made outside substratus."
            )
        else:
            print(
                f"\nApply complete! Resources: {s['add']} added, {s['change']} changed, "
                f"{s['destroy']} destroyed."
            )
    if not result.ok:
        raise typer.Exit(EXIT_ERROR)


def _diag(address: str, summary: str, detail: str) -> Diagnostic:
    return Diagnostic.error(summary, detail, address=address)


def _mode(destroy: bool, refresh_only: bool) -> Mode:
    if destroy and refresh_only:
        raise fail("Incompatible options", "--destroy and --refresh-only cannot be combined.")
    return Mode.DESTROY if destroy else Mode.REFRESH_ONLY if refresh_only else Mode.NORMAL


# -- commands ----------------------------------------------------------------------------------
@app.command()
def validate(
    files: Files = None,
    namespace: Namespace = None,
    runtime: RuntimeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print diagnostics as JSON.")] = False,
    no_color: NoColor = False,
) -> None:
    """Check the configuration: YAML, kinds, fields, names, references, cycles, and that the
    runtime can run every resource. Reads no state.

    Example: substratus validate -f examples/quickstart
    """
    try:
        cfg, r = _setup(
            files,
            state=None,
            runtime=runtime,
            artifacts=None,
            workspace="default",
            namespace=namespace,
        )
        rt = make_runtime(r) if r.runtime == "local" else None
        warnings = validate_config(cfg, rt)[0]
        if rt is not None:
            found = read_externals(cfg, rt)
            from substratus.engine.config import raise_dangling

            raise_dangling(
                [u for a, us in cfg.external.items() if a not in found for u in us], cfg.resources
            )
    except DiagnosticError as exc:
        if as_json:
            import json

            print(
                json.dumps(
                    {"valid": False, "diagnostics": [d.to_json() for d in exc.diagnostics]},
                    indent=2,
                )
            )
            raise typer.Exit(EXIT_ERROR) from exc
        raise
    if as_json:
        import json

        print(
            json.dumps(
                {
                    "valid": True,
                    "resources": len(cfg.resources),
                    "diagnostics": [d.to_json() for d in warnings],
                },
                indent=2,
            )
        )
        return
    print_diagnostics(warnings, use_color(no_color))
    n = sum(1 for res in cfg.resources.values() if res.kind != "build")
    print(f"Success! The configuration is valid ({n} resources, runtime {r.runtime}).")


@app.command()
def plan(
    files: Files = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Save the plan (JSON) to this file, to apply exactly it later."
        ),
    ] = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode", help="Exit 0 when there are no changes, 2 when there are."
        ),
    ] = False,
    target: Target = None,
    replace: Replace = None,
    destroy: Annotated[bool, typer.Option("--destroy", help="Plan to destroy everything.")] = False,
    refresh_only: RefreshOnly = False,
    no_refresh: NoRefresh = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan JSON.")] = False,
    workspace: Workspace = "default",
    state: StateUrl = None,
    runtime: RuntimeOpt = None,
    artifacts: ArtifactsOpt = None,
    namespace: Namespace = None,
    context: Context = None,
    lock: Lock = True,
    lock_timeout: LockTimeout = "0s",
    no_color: NoColor = False,
) -> None:
    """Show what apply would do: diff the configuration against the state and what runs.

    Example: substratus plan -f examples/quickstart --out plan.json --detailed-exitcode
    """
    mode = _mode(destroy, refresh_only)
    cfg, r = _setup(
        files,
        state=state,
        runtime=runtime,
        artifacts=artifacts,
        workspace=workspace,
        namespace=namespace,
    )
    backend = make_backend(r)
    rt = make_runtime(r)
    opts = PlanOptions(
        mode=mode,
        targets=_addresses(target, "--target"),
        replace=_addresses(replace, "--replace"),
        refresh=not no_refresh,
        workspace=workspace,
    )
    with locked(backend, "plan", lock, lock_timeout):
        current, _token = backend.read()
        the_plan = build_plan(cfg, current, rt, opts, settings=r.as_plan_settings())
    if as_json:
        print(the_plan.to_json(), end="")
    else:
        _print_plan(the_plan, use_color(no_color) and sys.stdout.isatty())
    if out is not None:
        _write_plan(out, the_plan)
        if not as_json:
            print(
                f"\nSaved the plan to: {out}\n\nTo perform exactly these actions, run:\n"
                f"  substratus apply {out}"
            )
    elif not as_json and the_plan.has_changes:
        print(
            "\nNote: You didn't use the --out option to save this plan, so substratus can't "
            'guarantee to take exactly these actions if you run "substratus apply" now.'
        )
    if detailed_exitcode and the_plan.has_changes:
        raise typer.Exit(EXIT_CHANGES)


def _write_plan(path: Path, the_plan: Plan) -> None:
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


def _read_plan(path: Path) -> Plan:
    try:
        return Plan.from_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail("Cannot read the plan file", f"{path}: {exc.strerror}.") from exc
    except ValueError as exc:
        raise fail("Invalid plan file", f"{path}: {exc}.") from exc


@app.command()
def apply(
    planfile: Annotated[
        Path | None,
        typer.Argument(help="A plan saved with `plan --out`; applied exactly, without a prompt."),
    ] = None,
    files: Files = None,
    auto_approve: AutoApprove = False,
    target: Target = None,
    replace: Replace = None,
    refresh_only: RefreshOnly = False,
    no_refresh: NoRefresh = False,
    parallelism: Parallelism = 10,
    timeout: Timeout = None,
    as_json: Annotated[bool, typer.Option("--json", help="Stream progress as NDJSON.")] = False,
    workspace: Workspace = "default",
    state: StateUrl = None,
    runtime: RuntimeOpt = None,
    artifacts: ArtifactsOpt = None,
    namespace: Namespace = None,
    context: Context = None,
    lock: Lock = True,
    lock_timeout: LockTimeout = "0s",
    no_color: NoColor = False,
) -> None:
    """Apply the configuration (plan, confirm, run in dependency order) or a saved plan.

    Examples: substratus apply -f examples/quickstart --auto-approve;
    substratus plan --out plan.json && substratus apply plan.json
    """
    if planfile is not None:
        _apply_saved(planfile, files, workspace, parallelism, timeout, as_json, lock, lock_timeout)
        return
    mode = _mode(False, refresh_only)
    _plan_and_apply(
        files,
        mode,
        target,
        replace,
        not no_refresh,
        auto_approve,
        parallelism,
        timeout,
        as_json,
        workspace,
        state,
        runtime,
        artifacts,
        namespace,
        lock,
        lock_timeout,
        no_color,
        "apply",
    )


def _plan_and_apply(
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
) -> None:
    cfg, r = _setup(
        files,
        state=state,
        runtime=runtime,
        artifacts=artifacts,
        workspace=workspace,
        namespace=namespace,
    )
    backend = make_backend(r)
    rt = make_runtime(r)
    opts = PlanOptions(
        mode=mode,
        targets=_addresses(target, "--target"),
        replace=_addresses(replace, "--replace"),
        refresh=refresh,
        workspace=workspace,
    )
    with locked(backend, operation, lock, lock_timeout):
        current, token = backend.read()
        the_plan = build_plan(cfg, current, rt, opts, settings=r.as_plan_settings())
        if not as_json:
            _print_plan(the_plan, use_color(no_color) and sys.stdout.isatty())
        if not the_plan.has_changes:
            return
        if not auto_approve:
            question = (
                "Do you really want to destroy all resources?"
                if mode is Mode.DESTROY
                else "Do you want to perform these actions?"
            )
            _confirm(question, "destroy" if mode is Mode.DESTROY else "apply")
        print()
        result = _walk(the_plan, current, token, backend, r, parallelism, as_json, timeout, cfg)
    _report(the_plan, result, as_json)


def _apply_saved(
    planfile: Path,
    files: list[str] | None,
    workspace: str,
    parallelism: int,
    timeout: float | None,
    as_json: bool,
    lock: bool,
    lock_timeout: str,
) -> None:
    the_plan = _read_plan(planfile)
    st = the_plan.settings
    paths = files or the_plan.config_files
    cfg = load_config(paths, namespace=str(st.get("namespace") or "default"))
    if cfg.digest != the_plan.config_digest:
        raise fail(
            "Saved plan is stale: the configuration changed",
            f"The configuration files ({', '.join(cfg.files)}) changed since {planfile} "
            "was created. Run plan again and apply the new plan.",
        )
    r = Resolved(
        state_url=str(st["state"]),
        artifacts_url=str(st["artifacts"]),
        runtime=str(st["runtime"]),
        workdir=Path(str(st["workdir"])),
        namespace=str(st.get("namespace") or "default"),
        workspace=the_plan.workspace or workspace,
        base=Path(str(st.get("base") or Path(str(st["workdir"])).parent)),
    )
    backend = make_backend(r)
    with locked(backend, "apply", lock, lock_timeout):
        current, token = backend.read()
        reason = staleness(
            the_plan, current.lineage if current else None, current.serial if current else None
        )
        if reason:
            raise fail("Saved plan is stale", reason)
        if not the_plan.has_changes:
            print("No changes. Nothing to apply.")
            return
        result = _walk(the_plan, current, token, backend, r, parallelism, as_json, timeout, cfg)
    _report(the_plan, result, as_json)


@app.command()
def destroy(
    files: Files = None,
    auto_approve: AutoApprove = False,
    target: Target = None,
    parallelism: Parallelism = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Stream progress as NDJSON.")] = False,
    workspace: Workspace = "default",
    state: StateUrl = None,
    runtime: RuntimeOpt = None,
    artifacts: ArtifactsOpt = None,
    namespace: Namespace = None,
    context: Context = None,
    lock: Lock = True,
    lock_timeout: LockTimeout = "0s",
    no_color: NoColor = False,
) -> None:
    """Destroy everything recorded in the state (dependents first).

    Example: substratus destroy -f examples/quickstart --auto-approve
    """
    _plan_and_apply(
        files,
        Mode.DESTROY,
        target,
        None,
        True,
        auto_approve,
        parallelism,
        None,
        as_json,
        workspace,
        state,
        runtime,
        artifacts,
        namespace,
        lock,
        lock_timeout,
        no_color,
        "destroy",
    )


@app.command()
def version() -> None:
    """Print the substratus version."""
    print(f"substratus {__version__}")


def tune_gc() -> None:
    """A CLI run is short and allocates many small, acyclic objects (specs, addresses, JSON):
    collect the young generation less often. Measured with bench/plan_scale.py: about a
    quarter off loading and planning 10,000 resources."""
    gc.set_threshold(50_000, 20, 20)


def main() -> None:
    """Console entry point: runs the app and turns every failure into a clear message."""
    from substratus import cli_state  # noqa: F401  (registers the state commands)

    tune_gc()
    try:
        rc = app(standalone_mode=False)
    except DiagnosticError as exc:
        print_diagnostics(exc.diagnostics, use_color(False))
        sys.exit(EXIT_ERROR)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("\nAborted.", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # a usage error (bad flag)
            exc.show()
            sys.exit(EXIT_ERROR)
        log = report_unexpected(exc)
        print(
            f"Error: unexpected {type(exc).__name__}: {exc}\n\n  This is a bug in "
            f"substratus. The details are in {log}; please include them in a bug report.",
            file=sys.stderr,
        )
        sys.exit(EXIT_ERROR)
    sys.exit(rc if isinstance(rc, int) else 0)
