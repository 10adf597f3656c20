"""Funding holes against the interval in force (issue 13): a hole right after another hole is found too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from binance_extractor import gaps
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.kinds import Dataset
from binance_extractor.sinks import open_sinks
from binance_extractor.timeutil import ms_to_dt
from tests.binance_extractor.test_gaps import delete, write
from tests.emulator import Emulator
from tests.emulator.data import FIXTURES, ms

FUNDING_RATES = Dataset.of_table("funding_rates")

FUNDING = [gaps.gap_dataset("funding_rates")]

HOUR = 3_600_000
DAY = 24 * HOUR


@pytest.fixture(
    params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql), pytest.param("mongo", marks=pytest.mark.mongo)]
)
def store(request: pytest.FixtureRequest) -> str:
    request.getfixturevalue(f"{request.param}_conn_id")
    return str(request.param)


@pytest.fixture
def client(emulator: Emulator) -> Iterator[BinanceFuturesClient]:
    c = BinanceFuturesClient.from_env()
    yield c
    c.close()


def funding_scan(sinks: list[Any], symbol: str, end: int) -> list[gaps.Hole]:
    (scan,) = gaps.scan(sinks, FUNDING, [symbol], end=ms_to_dt(end), now=end)
    return scan.holes


def test_two_holes_16_hours_apart_are_both_found_and_filled_in_one_pass(
    store: str, emulator: Emulator, client: BinanceFuturesClient
) -> None:
    raw = json.loads((FIXTURES / "XRPUSDT-funding.json").read_text())  # 91 real 8 h rows with ms jitter
    start, end = raw[0][0], raw[-1][0] + 1
    write(store, ["funding"], ["XRPUSDT"], start, end)
    sinks = open_sinks([store])
    try:
        (sink,) = sinks
        assert sink.count(FUNDING_RATES, "XRPUSDT") == 91
        assert funding_scan(sinks, "XRPUSDT", end) == []
        first, second = raw[40][0], raw[42][0]  # 16 h apart: the row between them stays
        assert delete(sink, "funding_rates", "XRPUSDT", first, first + 1) == 1
        assert delete(sink, "funding_rates", "XRPUSDT", second, second + 1) == 1
        holes = funding_scan(sinks, "XRPUSDT", end)
        assert [(h.start_ms, h.end_ms, h.missing) for h in holes] == [
            (raw[39][0] + 1, raw[41][0], 1),
            (raw[41][0] + 1, raw[43][0], 1),
        ]
        results = gaps.fill_chunks(gaps.chunk_holes(holes, 7 * DAY), sinks, client)
        assert [r.error for r in results] == [None] * len(results)
        assert sink.count(FUNDING_RATES, "XRPUSDT") == 91  # 91 -> 89 -> 91, not 90
        assert funding_scan(sinks, "XRPUSDT", end) == []
    finally:
        for s in sinks:
            s.close()


def test_consecutive_holes_on_a_1h_contract_and_interval_changes(
    store: str, emulator: Emulator, client: BinanceFuturesClient
) -> None:
    start, end = ms(2025, 5, 28), ms(2025, 10, 4)  # BTCUSDT: 8 h, 4 h from 2025-06-01, 1 h from 2025-10-01
    write(store, ["funding"], ["BTCUSDT"], start, end)
    sinks = open_sinks([store])
    try:
        (sink,) = sinks
        assert funding_scan(sinks, "BTCUSDT", end) == []  # neither change of interval is a hole
        h = ms(2025, 10, 2, 6)
        deleted = [h + k * HOUR for k in (0, 2, 4, 6, 8)]  # every other hour missing: five holes in a row
        june = ms(2025, 6, 1, 8)
        deleted += [june, june + 8 * HOUR]  # and two 4 h holes right after the change from 8 h
        for t in deleted:
            assert delete(sink, "funding_rates", "BTCUSDT", t, t + HOUR // 2) == 1
        holes = funding_scan(sinks, "BTCUSDT", end)
        assert [h.missing for h in holes] == [1] * 7
        assert all(hole.start_ms <= t < hole.end_ms for hole, t in zip(holes, sorted(deleted), strict=True))
        results = gaps.fill_chunks(gaps.chunk_holes(holes, 7 * DAY), sinks, client)
        assert [r.error for r in results] == [None] * len(results)
        assert funding_scan(sinks, "BTCUSDT", end) == []
    finally:
        for s in sinks:
            s.close()


def test_funding_info_gives_each_contracts_current_interval(emulator: Emulator, client: BinanceFuturesClient) -> None:
    hours = gaps.funding_intervals(client)
    assert hours == {"BTCUSDT": 1, "SYNTHUSDT": 1, "1000PEPEUSDT": 4}  # 8 h contracts are not listed
    assert emulator.count("/fapi/v1/fundingInfo") == 1


def test_a_missing_tail_of_a_1h_contract_is_found_with_its_funding_interval(
    store: str, emulator: Emulator, client: BinanceFuturesClient
) -> None:
    start, end = ms(2025, 10, 2), ms(2025, 10, 4)
    write(store, ["funding"], ["BTCUSDT"], start, end)
    sinks = open_sinks([store])
    try:
        (sink,) = sinks
        assert delete(sink, "funding_rates", "BTCUSDT", end - 3 * HOUR, end) == 3
        (blind,) = gaps.scan(sinks, FUNDING, ["BTCUSDT"], end=ms_to_dt(end), now=end)
        assert blind.holes == []  # 3 h is within the 8 h assumed without fundingInfo
        hours = gaps.funding_intervals(client)
        (scan,) = gaps.scan(sinks, FUNDING, ["BTCUSDT"], end=ms_to_dt(end), now=end, funding_hours=hours)
        assert [(h.missing, h.end_ms) for h in scan.holes] == [(3, end)]
        results = gaps.fill_chunks(gaps.chunk_holes(scan.holes, 7 * DAY), sinks, client)
        assert [r.error for r in results] == [None] and sink.count(FUNDING_RATES, "BTCUSDT") == 48
    finally:
        for s in sinks:
            s.close()


def test_unreadable_funding_info_falls_back_to_8_hours(emulator: Emulator) -> None:
    emulator.inject("503", times=10, path="/fapi/v1/fundingInfo")
    c = BinanceFuturesClient(emulator.url, "test-key", max_attempts=1, backoff_initial=0.01)
    try:
        assert gaps.funding_intervals(c) is None
    finally:
        c.close()
    assert gaps.funding_ms_of(None, "BTCUSDT") is None and gaps.funding_ms_of({}, "ETHUSDT") == 8 * HOUR
