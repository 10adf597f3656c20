"""One IP-wide request-weight budget, shared by every thread, process and pod on the IP.

Binance counts weight per IP in fixed windows (one minute for REQUEST_WEIGHT) and reports the IP-wide total in
every response's ``X-MBX-USED-WEIGHT-<n><unit>`` header. Reading it lets independent processes share the
budget with no coordination service: each one throttles before ``limit * margin`` counting both what the
exchange reported and what it has in flight itself. A 429 stops everyone in the process until ``Retry-After``;
a 418 (IP ban) stops everything until the ban ends, or fails at once when the ban is longer than we may wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from binance_extractor.errors import IPBannedError

log = logging.getLogger(__name__)

_UNIT_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
_UNIT_LETTER = {"SECOND": "S", "MINUTE": "M", "HOUR": "H", "DAY": "D"}


@dataclass(frozen=True)
class WeightRule:
    """The REQUEST_WEIGHT limit as exchangeInfo states it."""

    limit: int = 2400
    window_seconds: int = 60
    header: str = "X-MBX-USED-WEIGHT-1M"

    @classmethod
    def from_exchange_info(cls, info: dict) -> WeightRule:
        for rule in info.get("rateLimits", []):
            if rule.get("rateLimitType") == "REQUEST_WEIGHT":
                unit = str(rule.get("interval", "MINUTE")).upper()
                num = int(rule.get("intervalNum", 1))
                return cls(
                    limit=int(rule["limit"]),
                    window_seconds=num * _UNIT_SECONDS.get(unit, 60),
                    header=f"X-MBX-USED-WEIGHT-{num}{_UNIT_LETTER.get(unit, 'M')}",
                )
        return cls()


@dataclass
class Ticket:
    weight: int
    window: int


class WeightLimiter:
    """Blocks callers until their request fits the budget; learns the IP-wide usage from response headers."""

    def __init__(
        self,
        rule: WeightRule | None = None,
        margin: float = 0.95,
        max_ban_wait: float = 300.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rule = rule or WeightRule()
        self.margin = margin
        self.max_ban_wait = max_ban_wait
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._window = -1
        self._reported = 0  # highest IP-wide usage the exchange reported in the current window
        self._in_flight = 0  # weight sent in the current window and not yet reported back
        self._seen = False  # has a response reported the IP-wide usage in the current window?
        self._paused_until = 0.0  # 429 Retry-After
        self._banned_until = 0.0  # 418
        self.max_reported = 0
        self.waited_seconds = 0.0

    @property
    def budget(self) -> int:
        return max(1, int(self.rule.limit * self.margin))

    def set_rule(self, rule: WeightRule) -> None:
        with self._cond:
            self.rule = rule
            self._cond.notify_all()

    def _roll(self, now: float) -> int:
        window = int(now // self.rule.window_seconds)
        if window != self._window:
            self._window, self._reported, self._in_flight, self._seen = window, 0, 0, False
        return window

    def acquire(self, weight: int) -> Ticket:
        """Wait until ``weight`` fits this window's budget (and no pause or ban is running), then reserve it."""
        weight = min(weight, self.budget)
        with self._cond:
            while True:
                now = self._clock()
                if self._banned_until > now:
                    remaining = self._banned_until - now
                    if remaining > self.max_ban_wait:
                        raise IPBannedError(
                            self._banned_until,
                            f"IP banned by Binance (HTTP 418) for another {remaining:.0f} s, longer than the "
                            f"{self.max_ban_wait:.0f} s this run may wait; nothing was sent",
                        )
                    self._wait(remaining)
                    continue
                if self._paused_until > now:
                    self._wait(self._paused_until - now)
                    continue
                window = self._roll(now)
                if not self._seen and self._in_flight:
                    # Until one response tells us what others on the IP used this window, send one probe only.
                    self._wait(self.rule.window_seconds)
                    continue
                if self._reported + self._in_flight + weight <= self.budget:
                    self._in_flight += weight
                    return Ticket(weight, window)
                # Sleep to the next window; a small lag covers clock skew with the exchange.
                self._wait((window + 1) * self.rule.window_seconds - now + 0.05)

    def _wait(self, seconds: float) -> None:
        seconds = max(seconds, 0.001)
        self.waited_seconds += seconds
        self._cond.wait(timeout=seconds)

    def release(self, ticket: Ticket, used: int | None) -> None:
        """Record a response: ``used`` is the IP-wide header value (None if the response had none)."""
        with self._cond:
            window = self._roll(self._clock())
            if ticket.window == window:
                self._in_flight = max(0, self._in_flight - ticket.weight)
                if used is not None:
                    self._reported = max(self._reported, used)
                    self._seen = True
            if used is not None:
                self.max_reported = max(self.max_reported, used)
            self._cond.notify_all()

    def pause(self, retry_after: float) -> None:
        """HTTP 429: nobody in this process sends anything before Retry-After has passed."""
        with self._cond:
            self._paused_until = max(self._paused_until, self._clock() + max(retry_after, 1.0))
            log.warning("weight limit hit (HTTP 429): pausing all requests for %.0f s", retry_after)

    def ban(self, retry_after: float) -> None:
        """HTTP 418: the IP is banned; record until when (the next acquire waits or fails)."""
        with self._cond:
            self._banned_until = max(self._banned_until, self._clock() + max(retry_after, 1.0))
            log.error("IP banned by Binance (HTTP 418) for %.0f s", retry_after)
