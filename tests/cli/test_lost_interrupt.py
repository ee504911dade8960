"""A stop signal CPython lost on its way (raised inside Python code that C code called and then
cleared the error of) still stops the CLI: after loading, and before and while it waits for the
state lock — never a command that waits five minutes after the user pressed Ctrl-C."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus.cli import signals
from substratus.cli.locking import locked
from substratus.engine.backend import LockInfo
from substratus.state.local import FileBackend
from tests.support.waiting import wait_for


@pytest.fixture(autouse=True)
def clean_signals() -> Iterator[None]:
    before = list(signals.received)
    signals.settle()
    yield
    signals.received[:] = before
    signals.settle()


def test_check_raises_a_received_stop_until_it_is_settled() -> None:
    signals.check()  # nothing received: nothing to do
    signals.received.append(signal.SIGINT)  # what the handler records before it raises
    with pytest.raises(KeyboardInterrupt) as caught:
        signals.check()
    assert not isinstance(caught.value, signals.Terminated)
    signals.settle()  # caught by code that goes on (the notebook's Ctrl-C)
    signals.check()
    signals.received.append(signal.SIGTERM)
    with pytest.raises(signals.Terminated):
        signals.check()


def test_a_lost_interrupt_stops_the_lock_wait_and_leaves_the_lock(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "state")
    mine = backend.lock(LockInfo(operation="apply"))  # held: the command would wait 5 minutes
    signals.received.append(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), locked(backend, "plan", True, "5m"):
        pytest.fail("the lock was taken although it is held")
    current = backend.current_lock()
    assert current is not None and current.id == mine
    backend.unlock(mine)


def test_an_interrupt_lost_during_the_wait_ends_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = FileBackend(tmp_path / "state")
    mine = backend.lock(LockInfo(operation="apply"))
    ended = threading.Event()

    def lose_one() -> None:  # a SIGINT whose KeyboardInterrupt vanished: only the record stays
        signals.received.append(signal.SIGINT)

    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            with locked(backend, "plan", True, "5m"):
                pass
        except BaseException as exc:  # the outcome is what is asserted
            outcome.append(exc)
        ended.set()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    said: list[str] = []

    def waiting() -> bool:
        said.append(capsys.readouterr().err)
        return "Acquiring state lock" in "".join(said)

    wait_for(waiting, "the command to wait for the lock")
    lose_one()
    assert ended.wait(60), "the lock wait went on after the interrupt"
    assert len(outcome) == 1 and isinstance(outcome[0], KeyboardInterrupt), outcome
    backend.unlock(mine)
