"""The ``substratus`` command line (typer): the composition root.

The app is created here and every command registered on it, explicitly and in the order
``--help`` lists them; each command lives in the module of its noun (``plan``, ``apply``,
``state``, …) and builds one ``options.RunOptions`` from its command line. ``main`` maps every
outcome to an exit code (``substratus.cli.errors``): 0 success / no changes, 1 error, 2
``plan --detailed-exitcode`` with changes.
"""

from __future__ import annotations

import gc
import os
import sys

import typer

from substratus.cli import signals
from substratus.cli.apply import apply, destroy
from substratus.cli.comment import comment
from substratus.cli.completion import COMPLETE_VAR, completion
from substratus.cli.errors import EXIT_ERROR, print_diagnostics, report_unexpected, use_color
from substratus.cli.graph import graph
from substratus.cli.helptext import WordsCommand
from substratus.cli.logs import logs
from substratus.cli.notebook import notebook
from substratus.cli.output import output
from substratus.cli.plan import plan
from substratus.cli.schema import schema
from substratus.cli.show import show
from substratus.cli.state import (
    force_unlock,
    state_list,
    state_pull,
    state_push,
    state_recover,
    state_rm,
    state_show,
)
from substratus.cli.validate import validate
from substratus.cli.version import version_line
from substratus.cli.workspace import workspace_delete, workspace_list, workspace_select
from substratus.engine.diagnostic import DiagnosticError


def version() -> None:
    """Print the substratus version."""
    print(version_line())


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
state_app = typer.Typer(
    help="Inspect and edit the recorded state (advanced).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
workspace_app = typer.Typer(
    help="Workspaces: independent states (and locks) in one backend, e.g. staging and prod.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

# -- every command, in the order --help lists them ---------------------------------------------
for command in (validate, plan, apply, destroy, version, notebook, graph, comment, show):
    app.command(cls=WordsCommand)(command)
app.command("force-unlock", cls=WordsCommand)(force_unlock)
app.command(cls=WordsCommand)(output)
app.command(cls=WordsCommand)(logs)
app.command(cls=WordsCommand)(completion)
app.command(cls=WordsCommand)(schema)
state_app.command("list", cls=WordsCommand)(state_list)
state_app.command("show", cls=WordsCommand)(state_show)
state_app.command("rm", cls=WordsCommand)(state_rm)
state_app.command("pull", cls=WordsCommand)(state_pull)
state_app.command("push", cls=WordsCommand)(state_push)
state_app.command("recover", cls=WordsCommand)(state_recover)
app.add_typer(state_app, name="state")
workspace_app.command("list", cls=WordsCommand)(workspace_list)
workspace_app.command("select", cls=WordsCommand)(workspace_select)
workspace_app.command("delete", cls=WordsCommand)(workspace_delete)
app.add_typer(workspace_app, name="workspace")


def tune_gc() -> None:
    """A CLI run is short and allocates many small, acyclic objects (specs, addresses, JSON):
    collect the young generation less often. Measured with bench/plan_scale.py: about a
    quarter off loading and planning 10,000 resources."""
    gc.set_threshold(50_000, 20, 20)


def main() -> None:
    """Runs the app and turns every failure into a clear message; a stop signal
    (``KeyboardInterrupt``) propagates to ``substratus.cli.main``, which reports it."""
    tune_gc()
    signals.check()  # a Ctrl-C lost while the modules loaded
    if os.environ.get(COMPLETE_VAR):  # a shell asks for completions
        from substratus.cli.completion import init

        init()
    try:
        rc = app(standalone_mode=False, complete_var=COMPLETE_VAR)
    except DiagnosticError as exc:
        print_diagnostics(exc.diagnostics, use_color(False))
        sys.exit(EXIT_ERROR)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort as exc:
        cause = exc.__context__
        if isinstance(cause, KeyboardInterrupt):  # click's word for Ctrl-C, SIGTERM, SIGHUP
            raise cause from None  # reported by substratus.cli.main
        print("\nAborted.", file=sys.stderr)
        sys.exit(EXIT_ERROR)
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
    if rc == 130 and signals.received:  # typer's exit code for a KeyboardInterrupt
        raise signals.stop()
    sys.exit(rc if isinstance(rc, int) else 0)
