"""The ``substratus`` command line (typer): the composition root.

``main`` is the console entry point (``substratus = "substratus.cli:main"``). This package
imports nothing heavy: ``main`` installs the stop-signal handling (``signals``) first and only
then imports the app, so Ctrl-C, SIGTERM or SIGHUP at any moment, start-up included, ends with
one line and exit code 128 + the signal number, never a traceback. ``substratus version`` alone
is answered here, without the app: it needs no option parsing (typer validates even the
absent ``--help`` flag through pydantic, a tenth of a second to import).

A command's objects are never collected at exit: ``main`` ends with ``gc.freeze()``, so the
collections the interpreter runs while it shuts down skip every object the command made (the
shutdown took 50–60 ms after ``validate`` of 12 resources, a quarter of it, and about 65 ms after
a plan of 10,000; now 13–20 ms. No finalizer of ours depends on them: files and locks are closed
by ``with`` blocks, and Python never promised ``__del__`` at exit). ``python -m substratus``
and the console script end right after ``main``; nothing else calls it.

The CLI validates with pydantic but takes no pydantic plugins (``plugins.disable``): looking
for them reads the entry points of every installed distribution (15–30 ms of every command that
loads a configuration), and importing the loader that looks costs 13–21 ms more.

The methods ``dataclasses`` writes and the annotations ``typing`` resolves are compiled once and
kept between runs (``codecache``: 45–55 ms of a 0.2 s command, compiled anew at every start).
"""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, NoReturn

from substratus.cli import plugins, signals, startup
from substratus.cli.version import version_line

if TYPE_CHECKING:
    from substratus.cli.codecache import CodeCache


def main() -> None:
    """Run the CLI (``substratus.cli.app.main``) with every stop signal handled."""
    cache: CodeCache | None = None
    try:
        signals.install()
        if sys.argv[1:] == ["version"]:
            print(version_line())
            return
        startup.tune_gc(startup.command_named())
        from substratus.cli import codecache  # not for ``version``: it imports dataclasses

        cache = codecache.install()
        plugins.disable()
        from substratus.cli.app import main as run

        run()
    except KeyboardInterrupt as exc:
        stopped(exc)
    except SystemExit as exc:
        if signals.received:  # stopped by a signal, and reported (an interrupted apply)
            code = exc.code
            signals.leave(code if isinstance(code, int) else 0 if code is None else 1)
        raise
    finally:
        if cache is not None:
            cache.save()
        gc.freeze()  # the process ends now: its shutdown collects nothing (module docstring)


def stopped(exc: KeyboardInterrupt) -> NoReturn:
    """Report a stop by a signal in one line and exit 128 + its number."""
    signals.quiet()
    print("\n" + signals.stop_message(exc), file=sys.stderr)
    signals.leave(signals.exit_code(exc))


__all__ = ["main", "stopped"]
