"""The circuit breaker never serialises calls and opens/half-opens as documented."""

from __future__ import annotations

import threading

import pytest

from binance_extractor.breaker import CircuitBreaker, CircuitOpen


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def test_calls_run_concurrently():
    breaker = CircuitBreaker(3, 10, lambda e: True)
    inside = threading.Barrier(4, timeout=5)  # all four must be inside the guarded call at once
    threads = [threading.Thread(target=breaker.call, args=(inside.wait,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not inside.broken


def test_opens_after_consecutive_failures_then_allows_one_trial():
    clock = Clock()
    breaker = CircuitBreaker(2, 10, lambda e: isinstance(e, OSError), clock=clock)

    def fail() -> None:
        raise OSError("down")

    def ignored() -> None:
        raise ValueError("not a host failure")

    for _ in range(3):
        with pytest.raises(ValueError):
            breaker.call(ignored)
    assert not breaker.is_open
    for _ in range(2):
        with pytest.raises(OSError):
            breaker.call(fail)
    assert breaker.is_open
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: 1)
    clock.t = 11
    with pytest.raises(OSError):  # the one trial call fails: open again
        breaker.call(fail)
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: 1)
    clock.t = 22
    assert breaker.call(lambda: 42) == 42  # the trial succeeds: closed
    assert not breaker.is_open and breaker.call(lambda: 7) == 7
