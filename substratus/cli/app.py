"""The ``substratus`` command line (typer): the composition root.

The app is created here (``build_app``) and every command registered on it, explicitly and in
the order ``--help`` lists them (``COMMANDS``, ``GROUPS``); each command lives in the module of
its noun (``plan``, ``apply``, ``state``, …), imported only when the app is built with it, and
builds one ``options.RunOptions`` from its command line. A run builds the app with only the
command it names, so ``substratus validate`` imports no other command's module. ``main`` maps every
outcome to an exit code (``substratus.cli.errors``): 0 success / no changes, 1 error, 2
``plan --detailed-exitcode`` with changes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from substratus.cli import signals
from substratus.cli.errors import EXIT_ERROR, print_diagnostics, report_unexpected, use_color
from substratus.cli.helptext import WordsCommand
from substratus.cli.startup import COMPLETE_VAR, command_named
from substratus.cli.version import version_line
from substratus.engine.diagnostic import DiagnosticError


def version() -> None:
    """Print the substratus version."""
    print(version_line())


HELP = (
    "Plan and apply machine-learning resources (Datasets, Models, ModelServers, "
    "Notebooks) like Terraform: diff the configuration against the recorded state, show what "
    "will be built, loaded, retrained, rolled out or deleted and why, then apply it in order."
)
# -- every command, in the order --help lists them: (name, module, function) ------------------
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("validate", "substratus.cli.validate", "validate"),
    ("plan", "substratus.cli.plan", "plan"),
    ("apply", "substratus.cli.apply", "apply"),
    ("destroy", "substratus.cli.apply", "destroy"),
    ("version", "substratus.cli.app", "version"),
    ("notebook", "substratus.cli.notebook", "notebook"),
    ("graph", "substratus.cli.graph", "graph"),
    ("comment", "substratus.cli.comment", "comment"),
    ("show", "substratus.cli.show", "show"),
    ("force-unlock", "substratus.cli.state", "force_unlock"),
    ("output", "substratus.cli.output", "output"),
    ("logs", "substratus.cli.logs", "logs"),
    ("completion", "substratus.cli.completion", "completion"),
    ("schema", "substratus.cli.schema", "schema"),
)
# -- the groups of commands: name, help, then their commands as above --------------------------
GROUPS: tuple[tuple[str, str, tuple[tuple[str, str, str], ...]], ...] = (
    (
        "state",
        "Inspect and edit the recorded state (advanced).",
        (
            ("list", "substratus.cli.state", "state_list"),
            ("show", "substratus.cli.state", "state_show"),
            ("rm", "substratus.cli.state", "state_rm"),
            ("pull", "substratus.cli.state", "state_pull"),
            ("push", "substratus.cli.state", "state_push"),
            ("recover", "substratus.cli.state", "state_recover"),
        ),
    ),
    (
        "workspace",
        "Workspaces: independent states (and locks) in one backend, e.g. staging and prod.",
        (
            ("list", "substratus.cli.workspace", "workspace_list"),
            ("select", "substratus.cli.workspace", "workspace_select"),
            ("delete", "substratus.cli.workspace", "workspace_delete"),
        ),
    ),
)


def _typer(text: str) -> typer.Typer:
    return typer.Typer(help=text, no_args_is_help=True, rich_markup_mode=None)


def _register(target: typer.Typer, commands: tuple[tuple[str, str, str], ...]) -> None:
    for name, module, function in commands:
        # ``__import__``, not ``importlib.import_module``: an import statement's path, which
        # ``python -X importtime`` reports (the import budget is read from it)
        command: Callable[..., Any] = getattr(__import__(module, fromlist=[function]), function)
        target.command(name, cls=WordsCommand)(command)


def _group() -> None:
    """The app as a group even when it holds one command (see ``build_app``)."""


def build_app(only: str | None = None) -> typer.Typer:
    """The app: every command and group, or, when ``only`` names one, that one alone.

    A run needs only the command it names (``substratus validate …``): registering just that
    one imports neither the other commands' modules nor builds their click commands, and it
    reads, parses and reports exactly as in the whole app (the usage line, the errors, the
    help). A one-command app is kept a group (``_group``), so the command keeps its name.
    ``only=None`` (or a name that is no command) gives the whole app, which ``--help`` lists.
    """
    app = typer.Typer(
        name="substratus",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    named = [c for c in COMMANDS if c[0] == only]
    groups = [g for g in GROUPS if g[0] == only]
    if named:
        app.callback()(_group)
    if not named and not groups:
        named, groups = list(COMMANDS), list(GROUPS)
    _register(app, tuple(named))
    for name, text, commands in groups:
        sub = _typer(text)
        _register(sub, commands)
        app.add_typer(sub, name=name)
    return app


def main() -> None:
    """Runs the app and turns every failure into a clear message; a stop signal
    (``KeyboardInterrupt``) propagates to ``substratus.cli.main``, which reports it."""
    only = command_named()
    signals.check()  # a Ctrl-C lost while the modules loaded
    if os.environ.get(COMPLETE_VAR):  # a shell asks for completions
        from substratus.cli.completion import init

        init()
    try:
        rc = build_app(only)(standalone_mode=False, complete_var=COMPLETE_VAR)
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
