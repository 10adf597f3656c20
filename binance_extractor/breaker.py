"""A minimal thread-safe circuit breaker that never holds its lock while the guarded call runs.

(pybreaker, the usual library, runs every guarded call inside its lock, which would serialise the client's
concurrent page requests and cap throughput far below the weight budget.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class CircuitOpen(Exception):
    """Raised instead of calling while the breaker is open."""


class CircuitBreaker:
    """Opens after ``fail_max`` consecutive failures; after ``reset_timeout`` one trial call may pass (half-open)."""

    def __init__(
        self,
        fail_max: int,
        reset_timeout: float,
        is_failure: Callable[[BaseException], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fail_max = fail_max
        self.reset_timeout = reset_timeout
        self._is_failure = is_failure
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._opened_at is not None

    def _admit(self) -> None:
        with self._lock:
            if self._opened_at is None:
                return
            if self._clock() - self._opened_at >= self.reset_timeout and not self._trial:
                self._trial = True  # half-open: exactly one trial call
                return
            raise CircuitOpen

    def call(self, func: Callable[..., T], *args: object) -> T:
        self._admit()
        try:
            result = func(*args)
        except BaseException as exc:
            with self._lock:
                if self._is_failure(exc):
                    self._failures += 1
                    if self._trial or self._failures >= self.fail_max:
                        self._opened_at = self._clock()
                self._trial = False
            raise
        with self._lock:
            self._failures, self._opened_at, self._trial = 0, None, False
        return result
