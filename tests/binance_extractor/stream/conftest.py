"""Fixtures of the tail's tests: the market's clock, pinned at ``T0`` and moved by the test, and the emulator on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from binance_extractor import clock
from binance_extractor.clock import FixedClock
from tests.binance_extractor.stream.harness import T0
from tests.emulator import Emulator


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FixedClock]:
    monkeypatch.setenv("BINANCE_EXTRACTOR_HISTORY_DAYS", "1")
    fc = FixedClock(T0)
    with clock.using(fc):
        yield fc


@pytest.fixture
def emu(make_emulator: Any, fixed_clock: FixedClock) -> Emulator:
    return make_emulator(clock=fixed_clock)  # type: ignore[no-any-return]
