"""Code that asks "what time is it" asks the library clock (issue 13 review): pin it and the answers follow."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from binance_extractor import cli_options, clock, freshness, timeframes
from binance_extractor.airflow import orchestration
from binance_extractor.clock import FixedClock
from binance_extractor.errors import InputError
from binance_extractor.timeutil import dt_to_ms

PINNED = datetime(2021, 3, 10, 12, 2, 30, tzinfo=UTC)


@pytest.fixture
def pinned():
    with clock.using(FixedClock(dt_to_ms(PINNED))) as fixed:
        yield fixed


def test_freshness_lag_is_measured_against_the_library_clock(pinned):
    # the newest stored 5m candle opened at 11:50: 11:55 is closed and missing, 12:00 is still forming
    assert (
        freshness.record_freshness("BTCUSDT", timeframes.parse("5m"), datetime(2021, 3, 10, 11, 50, tzinfo=UTC))
        == 300.0
    )
    assert (
        freshness.record_freshness("BTCUSDT", timeframes.parse("5m"), datetime(2021, 3, 10, 11, 55, tzinfo=UTC)) == 0.0
    )


def test_cli_future_start_follows_the_library_clock(pinned):
    args = argparse.Namespace(start="2021-03-11", end=None)
    with pytest.raises(InputError, match="in the future"):
        cli_options.times(args)
    args = argparse.Namespace(start="2021-03-10T12:00", end=None)
    assert cli_options.times(args)[0] == datetime(2021, 3, 10, 12, 0, tzinfo=UTC)


def test_manual_form_is_clamped_to_the_library_clock(pinned):
    params = {"symbols": ["BTCUSDT"], "interval": "1h", "start": "2021-03-01", "end": "2021-04-01", "sinks": []}
    assert orchestration.validate_manual(params).end == PINNED
    with pytest.raises(InputError, match="in the future"):
        orchestration.validate_manual({**params, "start": "2021-03-11", "end": "2021-03-12"})
