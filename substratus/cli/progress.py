"""Live progress of an apply: one line per running resource on a TTY, plain lines otherwise,
NDJSON events with ``--json``. Consumes ``engine.apply.Event``s; part of the CLI layer.
Phases may be throttled (plain lines: a "Still ..." line every 10 s); notices and restarts (a
failed attempt of a run that retries) always print; a restart's ``--json`` event
(``apply_restart``) adds ``attempt``, ``reason``, ``counted`` and ``next_attempt``. rich is
imported by the live view alone: plain lines and NDJSON (an apply in CI, in a pipe) do not load
it (about 30 ms)."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from substratus.cli.events import emit
from substratus.engine.apply import Event, EventKind
from substratus.engine.plan import Action

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


def _secs(x: float) -> str:
    return f"{int(x // 60)}m{int(x % 60)}s" if x >= 60 else f"{int(x)}s"


class PlainProgress:
    """Terraform-like lines; a 'Still ...' line every ``every`` seconds per resource."""

    def __init__(self, out: IO[str] | None = None, every: float = 10.0) -> None:
        self.out = out or sys.stdout
        self.every = every
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, e: Event) -> None:
        ing, noun = e.action.look.ing, e.action.look.noun
        with self._lock:
            if e.kind is EventKind.START:
                self._last[e.address] = time.monotonic()
                self._print(f"{e.address}: {ing}...")
            elif e.kind is EventKind.PHASE:
                now = time.monotonic()
                if now - self._last.get(e.address, 0) >= self.every:
                    self._last[e.address] = now
                    self._print(
                        f"{e.address}: Still {ing.lower()}... [{_secs(e.elapsed)} "
                        f"elapsed] {e.message}"
                    )
            elif e.kind in (EventKind.NOTICE, EventKind.RESTART):
                self._print(f"{e.address}: {e.message}")
            elif e.kind is EventKind.DONE:
                self._print(f"{e.address}: {noun} complete after {_secs(e.elapsed)}")
            elif e.kind is EventKind.FAILED:
                self._print(f"{e.address}: {noun} FAILED after {_secs(e.elapsed)}: {e.message}")
            elif e.kind is EventKind.SKIPPED:
                self._print(f"{e.address}: {e.message}")
            elif e.kind is EventKind.DETACHED:
                self._print(f"{e.address}: detached after {_secs(e.elapsed)}: {e.message}")

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def close(self) -> None:
        pass


class JsonProgress:
    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()

    def __call__(self, e: Event) -> None:
        doc: dict[str, Any] = {
            "type": f"apply_{e.kind}",
            "address": e.address,
            "action": e.action,
            "message": e.message,
            "elapsed": round(e.elapsed, 3),
        }
        if e.detail:
            doc["detail"] = e.detail
        if e.attempt is not None:  # apply_restart: the attempt that failed, why, what follows
            doc["attempt"] = e.attempt.number
            doc["reason"] = e.attempt.reason
            doc["counted"] = e.attempt.counted
            doc["next_attempt"] = e.attempt.number + 1
        with self._lock:
            emit(doc, self.out)

    def close(self) -> None:
        pass


class LiveProgress:
    """rich Live: a line per running resource with phase and elapsed time."""

    def __init__(self, console: Console) -> None:
        from rich.live import Live

        self.console = console
        self.running: dict[str, tuple[Action, float, str]] = {}
        self._lock = threading.Lock()
        self.live = Live(
            self._render(),
            console=console,
            refresh_per_second=4,
            transient=True,
            get_renderable=self._render,
        )
        self.live.start()

    def _render(self) -> Text:
        from rich.text import Text

        t = Text()
        now = time.monotonic()
        for addr, (action, started, phase) in sorted(self.running.items()):
            ing = action.look.ing
            t.append(f"  {addr}: {ing}... [{_secs(now - started)}] {phase}\n")
        return t

    def __call__(self, e: Event) -> None:
        from rich.text import Text

        noun = e.action.look.noun
        with self._lock:
            if e.kind is EventKind.START:
                self.running[e.address] = (e.action, time.monotonic(), "")
            elif e.kind is EventKind.PHASE and e.address in self.running:
                a, s, _ = self.running[e.address]
                self.running[e.address] = (a, s, e.message)
            elif e.kind in (EventKind.NOTICE, EventKind.RESTART):
                self.console.print(Text(f"{e.address}: {e.message}", style="yellow"))
            else:
                self.running.pop(e.address, None)
                msg = {
                    "done": f"{noun} complete after {_secs(e.elapsed)}",
                    "failed": f"{noun} FAILED after {_secs(e.elapsed)}: {e.message}",
                    "skipped": e.message,
                    "detached": f"detached: {e.message}",
                }.get(e.kind, e.message)
                style = {"done": "green", "failed": "red"}.get(e.kind, "yellow")
                self.live.update(self._render(), refresh=True)
                self.console.print(Text(f"{e.address}: {msg}", style=style))

    def close(self) -> None:
        self.live.stop()
