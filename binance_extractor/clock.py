"""The library's one source of "now".

Everything that depends on the current time (closed candles, freshness, holes near the present, funding
schedules, archive publication) asks this module, never ``time.time()`` or ``datetime.now()`` directly. That
gives tests one place to pin the instant (and share it with the exchange emulator), and gives the client one
place to apply the exchange's clock offset.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Protocol

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock(Protocol):
    """Anything that tells the current time in epoch milliseconds."""

    def now_ms(self) -> int: ...


class SystemClock:
    """This machine's wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FixedClock:
    """A clock that only moves when told to: tests pin an instant with it and share it with the emulator."""

    def __init__(self, start_ms: int) -> None:
        self._ms = int(start_ms)
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._ms

    def set(self, ms: int) -> None:
        with self._lock:
            self._ms = int(ms)

    def advance(self, ms: int) -> None:
        with self._lock:
            self._ms += int(ms)

    def __call__(self) -> int:  # the emulator takes a plain callable
        return self.now_ms()


class CallableClock:
    """Adapts a ``() -> epoch ms`` callable."""

    def __init__(self, fn: Callable[[], int]) -> None:
        self._fn = fn

    def now_ms(self) -> int:
        return int(self._fn())


_current: Clock = SystemClock()


def current() -> Clock:
    return _current


def set_clock(clock: Clock) -> Clock:
    """Install ``clock`` process-wide; returns the previous one."""
    global _current
    previous, _current = _current, clock
    return previous


@contextlib.contextmanager
def using(clock: Clock) -> Iterator[Clock]:
    """Temporarily install ``clock`` (tests)."""
    previous = set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(previous)


def now_ms() -> int:
    return _current.now_ms()


def now() -> datetime:
    """Aware UTC datetime, millisecond precision."""
    return _EPOCH + timedelta(milliseconds=now_ms())
