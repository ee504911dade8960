"""Apply progress: a notice is printed at once by every renderer (phases may be throttled), and
the live view keeps the resource's line while it runs."""

from __future__ import annotations

import io
import json

from rich.console import Console

from substratus.cli.progress import JsonProgress, LiveProgress, PlainProgress
from substratus.engine.apply import Event, EventKind
from substratus.engine.plan import Action

NOTICE = "port 1 is in use by another program: the endpoint moves"


def events() -> list[Event]:
    return [
        Event(EventKind.START, "modelserver.api", Action.UPDATE),
        Event(EventKind.PHASE, "modelserver.api", Action.UPDATE, "stopping pid 7", 0.1),
        Event(EventKind.NOTICE, "modelserver.api", Action.UPDATE, NOTICE, 0.2),
        Event(
            EventKind.PHASE,
            "modelserver.api",
            Action.UPDATE,
            "waiting for http://127.0.0.1:2/",
            0.3,
        ),
        Event(EventKind.DONE, "modelserver.api", Action.UPDATE, "", 0.4),
    ]


def test_plain_progress_prints_notices_but_throttles_phases() -> None:
    out = io.StringIO()
    progress = PlainProgress(out, every=3600)
    for e in events():
        progress(e)
    assert out.getvalue().splitlines() == [
        "modelserver.api: Modifying...",
        f"modelserver.api: {NOTICE}",
        "modelserver.api: Modifications complete after 0s",
    ]


def test_live_progress_prints_a_notice_and_keeps_the_running_line() -> None:
    out = io.StringIO()
    progress = LiveProgress(Console(file=out, force_terminal=False, width=200))
    try:
        for e in events()[:3]:
            progress(e)
            if e.kind == "notice":
                assert "modelserver.api" in progress.running
        assert f"modelserver.api: {NOTICE}" in out.getvalue()
    finally:
        progress.close()


def test_json_progress_streams_the_notice() -> None:
    out = io.StringIO()
    progress = JsonProgress(out)
    for e in events():
        progress(e)
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [d["type"] for d in docs].count("apply_notice") == 1
    assert next(d for d in docs if d["type"] == "apply_notice")["message"] == NOTICE
