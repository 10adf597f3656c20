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


def test_reported_and_in_flight_weight_both_count():
    clock = Clock()
    limiter = WeightLimiter(WeightRule(100, 60), margin=1.0, clock=clock)
    a = limiter.acquire(40)
    b = limiter.acquire(40)
    limiter.release(a, used=70)  # another process on the IP used 30
    assert (limiter._reported, limiter._in_flight) == (70, 40)
    # 70 reported + 40 in flight: a further 40 would exceed 100, so it must wait for the next window
    waited = []
    limiter._wait = lambda s: (waited.append(s), setattr(clock, "t", clock.t + s))  # type: ignore[method-assign]
    limiter.acquire(40)
    assert waited and 39 < waited[0] < 41  # slept to the next minute boundary
    limiter.release(b, used=None)


def test_long_ban_fails_at_once_short_ban_waits():
    clock = Clock()
    limiter = WeightLimiter(WeightRule(), margin=1.0, max_ban_wait=60, clock=clock)
    limiter.ban(600)
    with pytest.raises(IPBannedError, match="banned"):
        limiter.acquire(1)
    limiter._banned_until = clock.t + 5
    limiter._wait = lambda s: setattr(clock, "t", clock.t + s)  # type: ignore[method-assign]
    limiter.acquire(1)
    assert clock.t >= limiter._banned_until
