"""``engine.backoff``: delays, attempts, deadlines and the retryable predicate, on a fake clock."""

from __future__ import annotations

import pytest

from substratus.engine.backoff import Backoff, GaveUp, retry


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def no_jitter(low: float, high: float) -> float:
    return (low + high) / 2


class Flaky:
    """Raises ``errors`` one by one, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_delays_double_up_to_the_maximum() -> None:
    policy = Backoff(first=0.25, maximum=2.0)
    assert [policy.delay(n, no_jitter) for n in range(1, 6)] == [0.25, 0.5, 1.0, 2.0, 2.0]


def test_jitter_stays_within_its_band() -> None:
    policy = Backoff(first=1.0, maximum=1.0, jitter=0.2)
    assert policy.delay(1, lambda lo, hi: lo) == pytest.approx(0.8)
    assert policy.delay(1, lambda lo, hi: hi) == pytest.approx(1.2)


def test_retries_a_retryable_error_until_it_succeeds() -> None:
    clock, call = Clock(), Flaky(ValueError("1"), ValueError("2"))
    seen: list[int] = []
    got = retry(
        call,
        Backoff(first=0.1, attempts=5),
        retryable=lambda e: isinstance(e, ValueError),
        on_retry=lambda _e, n: seen.append(n),
        sleep=clock.sleep,
        clock=clock,
        rand=no_jitter,
    )
    assert got == "ok" and call.calls == 3
    assert clock.slept == pytest.approx([0.1, 0.2]) and seen == [1, 2]


def test_an_error_that_is_not_retryable_propagates_at_once() -> None:
    clock, call = Clock(), Flaky(KeyError("no"))
    with pytest.raises(KeyError):
        retry(call, Backoff(attempts=5), retryable=lambda e: False, sleep=clock.sleep, clock=clock)
    assert call.calls == 1 and clock.slept == []


def test_gives_up_after_the_attempts() -> None:
    clock, call = Clock(), Flaky(*[ValueError(str(i)) for i in range(10)])
    with pytest.raises(GaveUp) as gave_up:
        retry(call, Backoff(attempts=3), retryable=lambda e: True, sleep=clock.sleep, clock=clock)
    assert call.calls == 3 and len(clock.slept) == 2
    assert gave_up.value.attempts == 3 and str(gave_up.value.last) == "2"
    assert gave_up.value.__cause__ is gave_up.value.last


def test_never_sleeps_past_the_deadline() -> None:
    clock, call = Clock(), Flaky(*[ValueError(str(i)) for i in range(100)])
    with pytest.raises(GaveUp):
        retry(
            call,
            Backoff(first=1.0, maximum=4.0, deadline=6.0),
            retryable=lambda e: True,
            sleep=clock.sleep,
            clock=clock,
            rand=no_jitter,
        )
    assert clock.slept == pytest.approx([1.0, 2.0, 3.0])  # the last one cut to the deadline
    assert clock.now == pytest.approx(6.0) and call.calls == 4


def test_a_deadline_of_zero_means_one_attempt() -> None:
    clock, call = Clock(), Flaky(ValueError("busy"))
    with pytest.raises(GaveUp):
        retry(call, Backoff(deadline=0.0), retryable=lambda e: True, sleep=clock.sleep, clock=clock)
    assert call.calls == 1 and clock.slept == []


def test_the_default_sleep_is_looked_up_at_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    assert retry(Flaky(ValueError()), Backoff(attempts=2), retryable=lambda e: True) == "ok"
    assert len(slept) == 1
