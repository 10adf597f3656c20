"""The limiter's bookkeeping with a controlled clock (no network: the HTTP behaviour is tested in test_client)."""

import pytest

from binance_extractor.errors import IPBannedError
from binance_extractor.ratelimit import WeightLimiter, WeightRule


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_040.0  # 20 s into a minute window (1_000_020 is a boundary)

    def __call__(self) -> float:
        return self.t


def test_rule_from_exchange_info():
    info = {
        "rateLimits": [
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 5, "limit": 200},
        ]
    }
    assert WeightRule.from_exchange_info(info) == WeightRule(200, 5, "X-MBX-USED-WEIGHT-5S")
    assert WeightRule.from_exchange_info({}) == WeightRule(2400, 60, "X-MBX-USED-WEIGHT-1M")


def advancing(limiter: WeightLimiter, clock: Clock, waited: list[float]) -> None:
    """Make the limiter's waits move the fake clock instead of sleeping."""

    def wait(seconds: float) -> None:
        waited.append(seconds)
        clock.t += seconds

    limiter._wait = wait  # type: ignore[method-assign]


def test_first_request_of_a_window_is_a_lone_probe():
    clock = Clock()
    limiter = WeightLimiter(WeightRule(100, 60), margin=1.0, clock=clock)
    waited: list[float] = []
    advancing(limiter, clock, waited)
    probe = limiter.acquire(2)
    limiter.release(probe, used=2)  # the exchange told us the IP-wide usage: now several may be in flight
    tickets = [limiter.acquire(2) for _ in range(4)]
    assert waited == [] and limiter._in_flight == 8
    for t in tickets:
        limiter.release(t, used=10)


def test_reported_and_in_flight_weight_both_count():
    clock = Clock()
    limiter = WeightLimiter(WeightRule(100, 60), margin=1.0, clock=clock)
    waited: list[float] = []
    advancing(limiter, clock, waited)
    a = limiter.acquire(30)
    limiter.release(a, used=60)  # another process on the IP used 30 as well
    b = limiter.acquire(30)
    assert (limiter._reported, limiter._in_flight) == (60, 30)
    # 60 reported + 30 in flight: a further 30 would exceed 100, so it waits for the next window
    limiter.acquire(30)
    assert len(waited) == 1 and 39 < waited[0] < 41  # slept to the next minute boundary, 20 s in
    limiter.release(b, used=None)


def test_long_ban_fails_at_once_short_ban_waits():
    clock = Clock()
    limiter = WeightLimiter(WeightRule(), margin=1.0, max_ban_wait=60, clock=clock)
    limiter.ban(600)
    with pytest.raises(IPBannedError, match="banned"):
        limiter.acquire(1)
    limiter._banned_until = clock.t + 5
    advancing(limiter, clock, [])
    limiter.acquire(1)
    assert clock.t >= limiter._banned_until
