"""Signals that stop the CLI: Ctrl-C (SIGINT), SIGTERM and SIGHUP all take one path.

Python turns SIGINT into ``KeyboardInterrupt``; ``install`` makes SIGTERM and SIGHUP raise
``Terminated``, a ``KeyboardInterrupt``, in the main thread, so everything that stops cleanly on
Ctrl-C (the walker detaches running work and records it, the state lock is released on the way
out) stops the same way on them. A signal whose disposition was inherited as ignored (``nohup``
ignores SIGHUP, a script's background job ignores SIGINT) stays ignored.

``stop_message(exc)`` and ``exit_code(exc)`` say how the CLI reports a stop: one line, and
128 + the signal number (130 for Ctrl-C), the shell's convention. ``quiet()`` ignores every
further stop signal while that line is printed, so a second Ctrl-C cannot turn it into a
traceback. ``check()`` raises a stop
that was received but lost on its way: CPython drops an exception raised in Python code that C
code calls and clears errors after (a dict look-up's ``__eq__``, an attribute probe), so a Ctrl-C
at the wrong instant of start-up can vanish; the CLI checks before it waits (for the state lock)
and after loading. Code that catches a stop and goes on (the notebook's Ctrl-C) calls
``settle()``. ``leave(code)`` ends a process that received a stop signal with exactly ``code``:
CPython remembers a ``KeyboardInterrupt`` that went through code run by ``exec`` (dataclasses
and typing generate such code while modules load) and would otherwise end the process by
SIGINT at exit, even after the interrupt was handled. This module imports nothing heavy: the
entry point installs it before anything else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType
from typing import NoReturn

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would raise ``KeyboardInterrupt``."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


received: list[int] = []  # the stop signals handled so far (SIGINT, SIGTERM, SIGHUP), in order
_settled = [0]  # how many of them code caught and went on after (``settle``)


def _raise(signum: int, _frame: FrameType | None) -> None:
    received.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def install() -> None:
    """SIGTERM and SIGHUP raise ``Terminated`` in the main thread, SIGINT ``KeyboardInterrupt``
    as before (noted in ``received``), unless inherited as ignored (or handled by another)."""
    for sig in (signal.SIGINT, *STOP_SIGNALS):
        with contextlib.suppress(ValueError, OSError):  # not the main thread / not settable
            if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(sig, _raise)


def settle() -> None:
    """The stop signals received so far were caught by code that goes on: ``check`` ignores them."""
    _settled[0] = len(received)


def check() -> None:
    """Raise the stop for a signal received and neither reported nor settled (one that CPython
    lost on its way): after a stop nothing may go on."""
    if len(received) > _settled[0]:
        raise stop()


def leave(code: int) -> NoReturn:
    """Flush the output and end the process now with ``code`` (no interpreter clean-up)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def stop() -> KeyboardInterrupt:
    """The interrupt for the last stop signal handled (typer turns one into exit code 130, which
    the CLI then reports as the stop it was)."""
    last = received[-1] if received else signal.SIGINT
    return KeyboardInterrupt() if last == signal.SIGINT else Terminated(last)


def quiet() -> None:
    """Ignore every further stop signal (while the CLI reports the stop and exits)."""
    for sig in (signal.SIGINT, *STOP_SIGNALS):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, signal.SIG_IGN)


def name(exc: BaseException | None = None) -> str:
    """The signal that stopped the CLI: ``exc``'s, else the last one handled, else SIGINT."""
    if isinstance(exc, Terminated):
        return signal.Signals(exc.signum).name
    return signal.Signals(received[-1]).name if received else "SIGINT"


def stop_message(exc: BaseException) -> str:
    sig = name(exc)
    return "Interrupted." if sig == "SIGINT" else f"Stopped by {sig}."


def exit_code(exc: BaseException) -> int:
    return 128 + int(exc.signum if isinstance(exc, Terminated) else signal.SIGINT)
